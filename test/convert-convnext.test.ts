/**
 * DINOv3 ConvNeXt checkpoints against Hugging Face's own DINOv3ConvNextModel forward (transformers,
 * run by test/hf-reference.py on seeded random checkpoints it saves with save_pretrained): scaled-
 * down shapes, a three-stage model with SiLU and another eps (stride 16), and the released widths
 * and depths at small inputs: tiny and small whole (small has base's and large's depths); base's
 * and large's widths with one block per stage, which keeps the test at a third of the weights
 * (all four whole: 364M parameters, two minutes here). Non-square inputs in both orientations,
 * batches, and sizes that are not multiples of the stride (the convs drop the remainder, as
 * torch does).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { assertClose, hfOutputs, hfReference, runModel, type HfModelJob } from './fixtures/reference-outputs.js';

const CLASS = 'DINOv3ConvNextModel';

/**
 * The released configurations (config.json of facebook/dinov3-convnext-*: tiny [3, 3, 9, 3], the
 * others [3, 3, 27, 3]), base and large cut to one block per stage.
 */
const RELEASED: [string, number[], number[]][] = [
  ['tiny', [96, 192, 384, 768], [3, 3, 9, 3]],
  ['small', [96, 192, 384, 768], [3, 3, 27, 3]],
  ['base-widths', [128, 256, 512, 1024], [1, 1, 1, 1]],
  ['large-widths', [192, 384, 768, 1536], [1, 1, 1, 1]],
];

const MODELS: HfModelJob[] = [
  {
    name: 'convnext-scaled',
    class: CLASS,
    config: { hidden_sizes: [16, 32, 48, 64], depths: [2, 1, 3, 2] },
    seed: 31,
    inputs: [[1, 96, 128], [1, 128, 96], [2, 64, 160], [1, 100, 140], [1, 32, 32]],
  },
  {
    name: 'convnext-3-stages-silu',
    class: CLASS,
    config: { hidden_sizes: [24, 40, 56], depths: [1, 2, 1], hidden_act: 'silu', layer_norm_eps: 1e-5 },
    seed: 32,
    inputs: [[1, 48, 80], [3, 80, 48]],
  },
  ...RELEASED.map(([size, hidden_sizes, depths], k): HfModelJob => ({
    name: `convnext-${size}`,
    class: CLASS,
    config: { hidden_sizes, depths },
    seed: 40 + k,
    inputs: [[1, 64, 96], [1, 96, 64]],
  })),
];

let reference: string;
before(async () => {
  reference = await hfReference(MODELS);
});

for (const m of MODELS) {
  test(`${m.name} matches Hugging Face within 1e-4 at ${m.inputs.map((s) => s.join('x')).join(', ')} (BxHxW)`, async (t) => {
    const out = path.join(reference, `${m.name}.onnx`);
    const { info } = await convertCheckpoint(path.join(reference, m.name), out, { precision: 'fp32' });
    const widths = m.config.hidden_sizes as number[];
    const stride = 4 * 2 ** (widths.length - 1);
    assert.deepEqual([info.family, info.patchSize, info.numRegisters, info.hiddenSize, info.tokenLayout], ['dinov3-convnext', stride, 0, widths.at(-1), ['cls', 'patches']]);
    assert.deepEqual(loadModelInfo(out), info, 'the metadata read back describes the model');
    const session = await ort.InferenceSession.create(out);
    for (const input of m.inputs) {
      const ref = hfOutputs(reference, m.name, input);
      const got = await runModel(session, ref.pixels, ref.dims);
      const [b, h, w] = input;
      assert.deepEqual(got.dims, [b, 1 + Math.floor(h / stride) * Math.floor(w / stride), info.hiddenSize]);
      const d = assertClose(`${m.name} ${b}x${h}x${w}`, got, ref, info.hiddenSize);
      t.diagnostic(`${b}x${h}x${w}: max abs diff ${d.toExponential(2)}`);
    }
  });
}
