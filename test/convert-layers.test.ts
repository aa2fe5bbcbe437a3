/**
 * convert --layers: each chosen block's hidden state, through the final norm, is an output of its
 * own, equal to Hugging Face's final norm over output_hidden_states[k] (test/hf-reference.py) within
 * 1e-4, for DINOv3, DINOv2 and DINOv2 with registers at non-square inputs; the metadata records the
 * set, the last block and repeats add nothing, and a model converted without --layers is as before.
 * A ConvNeXt has no blocks in this sense: --layers on one is refused.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_CONVNEXT_TEST_MODEL, writeConvNextTestCheckpoint } from '../src/convert/test-convnext.js';
import { layerOutput } from '../src/model/contract.js';
import { METADATA_KEYS, infoToMetadata } from '../src/model/info.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { readOnnxHeader } from '../src/onnx/metadata-reader.js';
import { isUserError } from '../src/core/errors.js';
import { fakeModelInfo, writeFakeVit } from './fixtures/fake-vit.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';
import { hfLayerOutput, hfOutputs, hfReference, maxAbsDiff, tokenCosines, type HfModelJob } from './fixtures/reference-outputs.js';

const MODELS: HfModelJob[] = [
  {
    name: 'dinov3-layers',
    class: 'DINOv3ViTModel',
    config: { hidden_size: 64, num_attention_heads: 2, num_hidden_layers: 4, intermediate_size: 96, num_register_tokens: 4 },
    seed: 31,
    inputs: [[1, 96, 160], [2, 64, 48]],
    layers: [1, 3],
  },
  {
    name: 'dinov2-layers',
    class: 'Dinov2Model',
    config: { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 4, patch_size: 14, image_size: 112 },
    seed: 32,
    inputs: [[1, 112, 112], [1, 84, 140]],
    layers: [1, 3],
  },
  {
    name: 'dinov2-registers-layers',
    class: 'Dinov2WithRegistersModel',
    config: { hidden_size: 48, num_attention_heads: 4, num_hidden_layers: 3, patch_size: 14, image_size: 112, num_register_tokens: 4 },
    seed: 33,
    inputs: [[1, 140, 84]],
    layers: [2],
  },
];

/** What --layers asks for in each case: repeats, disorder and the last block, which all drop out. */
const REQUESTED: Record<string, number[]> = { 'dinov3-layers': [3, 1, 4, 3], 'dinov2-layers': [1, 3], 'dinov2-registers-layers': [3, 2] };

let reference: string;
before(async () => {
  reference = await hfReference(MODELS);
});

for (const m of MODELS) {
  test(`${m.name}: --layers ${REQUESTED[m.name]} outputs blocks ${m.layers} as Hugging Face's final norm over hidden_states[k], within 1e-4`, async (t) => {
    const out = path.join(reference, `${m.name}.onnx`);
    const { info } = await convertCheckpoint(path.join(reference, m.name), out, { precision: 'fp32', layers: REQUESTED[m.name] });
    assert.deepEqual(info.layers, m.layers);
    assert.equal(readOnnxHeader(out).metadata[METADATA_KEYS.layers], m.layers!.join(','));
    assert.deepEqual(loadModelInfo(out).layers, m.layers);

    const session = await ort.InferenceSession.create(out);
    assert.deepEqual(session.outputNames, ['last_hidden_state', 'pooler_output', ...m.layers!.map(layerOutput)]);
    for (const input of m.inputs) {
      const ref = hfOutputs(reference, m.name, input);
      const got = await session.run({ pixel_values: new ort.Tensor('float32', ref.pixels, ref.dims) });
      assert.ok(maxAbsDiff(got.last_hidden_state!.data as Float32Array, ref.lastHiddenState) <= 1e-4, 'last_hidden_state moved');
      for (const k of m.layers!) {
        const layer = got[layerOutput(k)]!;
        assert.deepEqual(layer.dims, got.last_hidden_state!.dims);
        const want = hfLayerOutput(reference, m.name, input, k);
        const d = maxAbsDiff(layer.data as Float32Array, want);
        const minCos = Math.min(...tokenCosines(layer.data as Float32Array, want, info.hiddenSize));
        t.diagnostic(`${input.join('x')} block ${k}: max abs diff ${d.toExponential(2)}, min token cosine ${minCos.toFixed(7)}`);
        assert.ok(d <= 1e-4, `block ${k} at ${input.join('x')}: max abs diff ${d} > 1e-4`);
        // A neighbouring block or an un-normed state is far off, not just outside 1e-4.
        const other = hfLayerOutput(reference, m.name, input, m.layers!.find((j) => j !== k) ?? k);
        if (m.layers!.length > 1) assert.ok(maxAbsDiff(layer.data as Float32Array, other) > 0.1, `block ${k} equals another block's output`);
      }
    }
  });
}

test('only the last block, or no --layers: no extra output and no layers metadata (models as before)', async () => {
  const m = MODELS[0]!;
  for (const layers of [[4], undefined]) {
    const out = path.join(reference, `${m.name}-last-${layers ? 'given' : 'none'}.onnx`);
    const { info } = await convertCheckpoint(path.join(reference, m.name), out, { precision: 'fp32', ...(layers ? { layers } : {}) });
    assert.equal('layers' in info, false);
    assert.equal(readOnnxHeader(out).metadata[METADATA_KEYS.layers], undefined);
    const session = await ort.InferenceSession.create(out);
    assert.deepEqual(session.outputNames, ['last_hidden_state', 'pooler_output']);
  }
});

test('--layers outside the model is refused naming the flag and the range', async () => {
  const m = MODELS[0]!;
  await assert.rejects(
    convertCheckpoint(path.join(reference, m.name), path.join(reference, 'bad.onnx'), { precision: 'fp32', layers: [2, 5] }),
    (e: Error) => isUserError(e) && /--layers 5: the checkpoint has blocks 1 to 4/.test(e.message),
  );
});

test('--layers on a DINOv3 ConvNeXt is refused in one line (its stages are out of scope), before anything is written', async () => {
  const checkpoint = path.join(tempDir(), 'convnext');
  await writeConvNextTestCheckpoint(checkpoint, TINY_CONVNEXT_TEST_MODEL);
  const out = path.join(reference, 'convnext-layers.onnx');
  const r = await runCli(['convert', checkpoint, '--out', out, '--layers', '1,3']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim(), "dinofeat: --layers 1,3: intermediate layers are for ViT checkpoints; a DINOv3 ConvNeXt's stages are not supported, convert it without --layers");
  assert.equal(fs.existsSync(out), false);
});

test('a layers metadata value that is not ascending block numbers is refused naming the key', () => {
  const info = fakeModelInfo({ patchSize: 8, hidden: 16, registers: 0 });
  for (const bad of ['2,1', '0', '1,x', '']) {
    const file = writeFakeVit(path.join(tempDir(), 'bad-layers.onnx'), { patchSize: 8, hidden: 16, registers: 0, metadata: { ...infoToMetadata(info), [METADATA_KEYS.layers]: bad } });
    assert.throws(() => loadModelInfo(file), (e: Error) => isUserError(e) && e.message.includes(`metadata dinofeat.layers=${JSON.stringify(bad)} is invalid`), bad);
  }
});
