/**
 * DINOv3 ConvNeXt checkpoints against Hugging Face's own DINOv3ConvNextModel forward (transformers,
 * run by test/hf-reference.py on seeded random checkpoints it saves with save_pretrained): scaled-
 * down shapes, a three-stage model with SiLU and another eps (stride 16), and the released widths
 * and depths at small inputs: tiny and small whole (small has base's and large's depths); base's
 * and large's widths with one block per stage, which keeps the test at a third of the weights
 * (all four whole: 364M parameters, two minutes here). Non-square inputs in both orientations,
 * batches, and sizes that are not multiples of the stride (the convs drop the remainder, as
 * torch does). Then fp16, int8 and int4 against fp32 on the scaled models, held to floors.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { loadModelInfo } from '../src/model/load-info.js';
import type { Precision } from '../src/model/info.js';
import { PrecisionMeter, assertClose, hfOutputs, hfReference, runModel, type HfModelJob, type PrecisionStats } from './fixtures/reference-outputs.js';
import { pythonJson } from './helpers/python.js';

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

/**
 * Measured on the two scaled models over all their inputs (docs/precisions.md, ConvNeXt):
 * CLS cos min / patch cos min / patch cos mean / max abs
 * fp16 1.0000000 / 0.9999999 / 1.0000000 / 1.4e-3; int8 0.999959 / 0.999791 / 0.999933 / 0.063;
 * int4 0.99555 / 0.99015 / 0.99622 / 0.53. Floors leave room for other CPUs' kernels, as the
 * ViTs' do; fp16 must also show its rounding (a model that kept fp32 weights gives 0).
 */
const FLOORS: Record<Exclude<Precision, 'fp32'>, { clsMin: number; patchMin: number; patchMean: number; maxAbs: number; minAbs?: number }> = {
  fp16: { clsMin: 0.99999, patchMin: 0.99999, patchMean: 0.999999, maxAbs: 5e-3, minAbs: 1e-4 },
  int8: { clsMin: 0.9998, patchMin: 0.999, patchMean: 0.9998, maxAbs: 0.2 },
  int4: { clsMin: 0.99, patchMin: 0.98, patchMean: 0.993, maxAbs: 1.2 },
};

/** The onnx package's view of an ONNX file's initializers: name and element type. */
function initializerTypes(file: string): Promise<Record<string, string>> {
  const code = 'import json,sys,onnx; m=onnx.load(sys.argv[1]); print(json.dumps({i.name: onnx.TensorProto.DataType.Name(i.data_type) for i in m.graph.initializer}))';
  return pythonJson<Record<string, string>>(['-c', code, file]);
}

for (const precision of ['fp16', 'int8', 'int4'] as const) {
  test(`ConvNeXt ${precision} stays within its measured floor against fp32`, async (t) => {
    const meter = new PrecisionMeter();
    for (const m of MODELS.slice(0, 2)) {
      const sessions = [];
      for (const p of ['fp32', precision] as const) {
        const out = path.join(reference, `${m.name}-${p}.onnx`);
        await convertCheckpoint(path.join(reference, m.name), out, { precision: p });
        sessions.push(await ort.InferenceSession.create(out));
      }
      for (const input of m.inputs) {
        const { pixels, dims } = hfOutputs(reference, m.name, input);
        const [ref, got] = [await runModel(sessions[0]!, pixels, dims), await runModel(sessions[1]!, pixels, dims)];
        meter.add(ref.lastHiddenState, got.lastHiddenState, ref.dims, 0);
      }
    }
    const s: PrecisionStats = meter.stats();
    t.diagnostic(`${precision}: CLS cos min ${s.clsMin.toFixed(7)} mean ${s.clsMean.toFixed(7)}, patch cos min ${s.patchMin.toFixed(7)} mean ${s.patchMean.toFixed(7)}, max abs ${s.maxAbs.toExponential(2)}`);
    const f = FLOORS[precision];
    for (const key of ['clsMin', 'patchMin', 'patchMean'] as const) assert.ok(s[key] >= f[key], `${precision}: ${key} ${s[key]} < ${f[key]}`);
    assert.ok(s.maxAbs <= f.maxAbs && s.maxAbs >= (f.minAbs ?? 0), `${precision}: max abs ${s.maxAbs} outside [${f.minAbs ?? 0}, ${f.maxAbs}]`);

    const file = path.join(reference, `${MODELS[0]!.name}-${precision}.onnx`);
    assert.ok(fs.statSync(file).size < fs.statSync(path.join(reference, `${MODELS[0]!.name}-fp32.onnx`)).size);
    if (precision === 'fp16') {
      // The blocks' Linears (pointwise convs), and only they, are stored in half; convs, norms, biases and layer scales stay float.
      const types = await initializerTypes(file);
      const linear = (name: string) => /\.pointwise_conv[12]\.weight$/.test(name);
      assert.ok(Object.keys(types).some(linear));
      for (const [name, type] of Object.entries(types)) assert.equal(type === 'FLOAT16', linear(name), `${name} is ${type}`);
    }
  });
}
