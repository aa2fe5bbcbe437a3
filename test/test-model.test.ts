/**
 * The generated test model: same bytes for the same seed, the tensor names and shapes of a Hugging
 * Face DINOv3 checkpoint (docs/model-architecture.md §1), labelled as not a real model, and loadable by
 * transformers' own DINOv3ViTModel with sane activations that respond to the image.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openCheckpoint } from '../src/convert/safetensors.js';
import { parameterCount, testCheckpointTensors, TINY_TEST_MODEL, VITS16_SHAPED, writeTestCheckpoint, type TestModelSpec } from '../src/convert/test-model.js';
import { GOLDEN } from './fixtures/reference-outputs.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const work = tempDir();

const GOLDEN_TINY = path.join(GOLDEN, 'models', 'tiny');
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;

/** docs/model-architecture.md §1 written out: every tensor of a HF DINOv3 checkpoint and its shape. */
function checkpointTensors(s: TestModelSpec): Map<string, number[]> {
  const D = s.hiddenSize;
  const I = s.intermediateSize;
  const t = new Map<string, number[]>([
    ['embeddings.cls_token', [1, 1, D]],
    ['embeddings.register_tokens', [1, s.numRegisters, D]],
    ['embeddings.mask_token', [1, 1, D]],
    ['embeddings.patch_embeddings.weight', [D, 3, s.patchSize, s.patchSize]],
    ['embeddings.patch_embeddings.bias', [D]],
  ]);
  for (let i = 0; i < s.numLayers; i++) {
    const l = `layer.${i}`;
    t.set(`${l}.norm1.weight`, [D]).set(`${l}.norm1.bias`, [D]);
    t.set(`${l}.attention.q_proj.weight`, [D, D]);
    if (s.queryBias) t.set(`${l}.attention.q_proj.bias`, [D]);
    t.set(`${l}.attention.k_proj.weight`, [D, D]);
    t.set(`${l}.attention.v_proj.weight`, [D, D]);
    if (s.valueBias) t.set(`${l}.attention.v_proj.bias`, [D]);
    t.set(`${l}.attention.o_proj.weight`, [D, D]).set(`${l}.attention.o_proj.bias`, [D]);
    t.set(`${l}.layer_scale1.lambda1`, [D]);
    t.set(`${l}.norm2.weight`, [D]).set(`${l}.norm2.bias`, [D]);
    t.set(`${l}.mlp.up_proj.weight`, [I, D]).set(`${l}.mlp.up_proj.bias`, [I]);
    t.set(`${l}.mlp.down_proj.weight`, [D, I]).set(`${l}.mlp.down_proj.bias`, [D]);
    if (s.gated) t.set(`${l}.mlp.gate_proj.weight`, [I, D]).set(`${l}.mlp.gate_proj.bias`, [I]);
    t.set(`${l}.layer_scale2.lambda1`, [D]);
  }
  return t.set('norm.weight', [D]).set('norm.bias', [D]);
}

function assertLayout(dir: string, spec: TestModelSpec): void {
  const ckpt = openCheckpoint(dir);
  try {
    const want = checkpointTensors(spec);
    assert.deepEqual(ckpt.names().slice().sort(), [...want.keys()].sort());
    for (const [name, shape] of want) assert.deepEqual(ckpt.info(name).shape, shape, name);
  } finally {
    ckpt.close();
  }
}

/** A ViT-7B-like small variant: gated SwiGLU MLP, no query/value biases. */
const GATED_NO_BIAS: TestModelSpec = { ...TINY_TEST_MODEL, gated: true, queryBias: false, valueBias: false, intermediateSize: 128, seed: 7 };

const tiny = path.join(work, 'tiny');
const gated = path.join(work, 'gated');
before(async () => {
  await writeTestCheckpoint(tiny, TINY_TEST_MODEL);
  await writeTestCheckpoint(gated, GATED_NO_BIAS, 'BF16');
});

test('the same seed writes the same bytes; another seed other weights', async () => {
  const a = tiny;
  const b = path.join(work, 'b');
  const c = path.join(work, 'c');
  await writeTestCheckpoint(b, TINY_TEST_MODEL);
  await writeTestCheckpoint(c, { ...TINY_TEST_MODEL, seed: TINY_TEST_MODEL.seed + 1 });
  for (const f of ['model.safetensors', 'config.json', 'preprocessor_config.json', 'README.md']) {
    assert.equal(sha256(path.join(a, f)), sha256(path.join(b, f)), f);
  }
  assert.notEqual(sha256(path.join(a, 'model.safetensors')), sha256(path.join(c, 'model.safetensors')));
});

test('tensor names and shapes are those of a Hugging Face checkpoint, plain and gated, with and without q/v biases', () => {
  assertLayout(tiny, TINY_TEST_MODEL);
  assertLayout(gated, GATED_NO_BIAS);
  const ckpt = openCheckpoint(gated);
  assert.equal(ckpt.info('layer.0.mlp.gate_proj.weight').dtype, 'BF16');
  ckpt.close();
});

test('VITS16_SHAPED has the released ViT-S/16 shapes: 211 tensors, 21,596,544 parameters', () => {
  const tensors = testCheckpointTensors(VITS16_SHAPED);
  const want = checkpointTensors(VITS16_SHAPED);
  assert.equal(Object.keys(tensors).length, 211);
  for (const [name, t] of Object.entries(tensors)) assert.deepEqual(t.shape, want.get(name), name);
  assert.equal(parameterCount(VITS16_SHAPED), 21_596_544);
});

test('config.json is a HF DINOv3 config like golden tiny, and every file says it is not a real model', () => {
  const config = readJson(path.join(tiny, 'config.json'));
  const note = config._dinofeat_note;
  assert.match(String(note), /NOT a real model/);
  delete config._dinofeat_note;
  // The tiny spec has golden tiny's sizes, so every HF field must match it exactly.
  assert.deepEqual(config, readJson(path.join(GOLDEN_TINY, 'config.json')));
  assert.deepEqual(readJson(path.join(tiny, 'preprocessor_config.json')), readJson(path.join(GOLDEN_TINY, 'preprocessor_config.json')));
  assert.match(fs.readFileSync(path.join(tiny, 'README.md'), 'utf8'), /NOT a real model/);
  const gatedConfig = readJson(path.join(gated, 'config.json'));
  assert.deepEqual([gatedConfig.use_gated_mlp, gatedConfig.hidden_act, gatedConfig.query_bias, gatedConfig.value_bias], [true, 'silu', false, false]);
});

const HF_CHECK = `
import json, sys, torch
from transformers import DINOv3ViTModel
report = {}
for d in sys.argv[1:]:
    model, info = DINOv3ViTModel.from_pretrained(d, output_loading_info=True)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 3, 64, 96, generator=g)
    b = a.clone()
    b[:, :, 16:32, 32:48] = torch.randn(1, 3, 16, 16, generator=g)  # patch row 1, column 2
    with torch.no_grad():
        oa = model(pixel_values=a, output_hidden_states=True)
        ob = model(pixel_values=b)
    report[d] = {
        'missing': sorted(info['missing_keys']), 'unexpected': sorted(info['unexpected_keys']),
        'mismatched': [str(m) for m in info['mismatched_keys']], 'errors': [str(e) for e in info['error_msgs']],
        'hidden_std': [h.std().item() for h in oa.hidden_states],
        'token_change': (oa.last_hidden_state - ob.last_hidden_state).norm(dim=-1)[0].tolist(),
    }
print(json.dumps(report))
`;

test("transformers' DINOv3ViTModel loads it with no missing or unexpected keys; activations are sane and follow the image", async () => {
  const dirs = [tiny, gated];
  const report = await pythonJson<
    Record<string, { missing: string[]; unexpected: string[]; mismatched: string[]; errors: string[]; hidden_std: number[]; token_change: number[] }>
  >(['-c', HF_CHECK, ...dirs]);
  for (const d of dirs) {
    const r = report[d]!;
    assert.deepEqual([r.missing, r.unexpected, r.mismatched, r.errors], [[], [], [], []], d);
    // Unit-variance input: every layer's output stays near unit scale.
    for (const s of r.hidden_std) assert.ok(s > 0.3 && s < 3, `${d}: hidden state std ${s}`);
    // Changing one patch of the image changes that patch's feature most, by far.
    const changed = 1 + TINY_TEST_MODEL.numRegisters + 1 * 6 + 2;
    const others = r.token_change.filter((_, k) => k !== changed);
    assert.ok(r.token_change[changed]! > 4 * Math.max(...others), `${d}: per-token change ${r.token_change.map((x) => x.toFixed(2))}`);
  }
});
