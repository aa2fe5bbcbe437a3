/**
 * Checkpoints that cannot be converted fail before anything is written, with one line that names
 * the file or tensor and what was expected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../src/convert/convert.js';
import { openCheckpoint, writeSafetensors } from '../src/convert/safetensors.js';
import { UserError } from '../src/core/errors.js';
import { TINY_CONVNEXT_TEST_MODEL, writeConvNextTestCheckpoint } from '../src/convert/test-convnext.js';
import { GOLDEN } from './fixtures/reference-outputs.js';
import { tempDir } from './helpers/temp.js';

const TINY = path.join(GOLDEN, 'models', 'tiny');

/** A copy of golden tiny with its config and tensors edited. */
async function brokenCopy(edit: { config?: (c: Record<string, unknown>) => void; tensors?: (t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>) => void }): Promise<string> {
  const dir = tempDir();
  const config = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const ckpt = openCheckpoint(TINY);
  const tensors = Object.fromEntries(ckpt.names().map((n) => [n, { dtype: 'F32' as const, shape: ckpt.info(n).shape, data: ckpt.read(n) }]));
  ckpt.close();
  edit.tensors?.(tensors);
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

async function convertFails(dir: string, ...mustMention: (string | RegExp)[]): Promise<void> {
  const out = path.join(dir, 'out.onnx');
  await assert.rejects(convertCheckpoint(dir, out, { precision: 'fp32' }), (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    for (const m of mustMention) assert.match(e.message, typeof m === 'string' ? new RegExp(m.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : m);
    return true;
  });
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('out.onnx')), [], 'nothing written');
}

test('a missing tensor is named, with the checkpoint directory', async () => {
  const dir = await brokenCopy({ tensors: (t) => delete t['layer.1.mlp.up_proj.bias'] });
  await convertFails(dir, 'layer.1.mlp.up_proj.bias', dir);
});

test('a tensor of the wrong shape is named with its file, its shape and the expected one', async () => {
  const dir = await brokenCopy({ tensors: (t) => (t['layer.0.attention.q_proj.weight'] = { dtype: 'F32', shape: [64, 32], data: new Float32Array(64 * 32) }) });
  await convertFails(dir, 'layer.0.attention.q_proj.weight', 'model.safetensors', '[64,32]', '[64,64]');
});

test('a config that disagrees with the weights (gated MLP without gate tensors) fails on the first missing one', async () => {
  const dir = await brokenCopy({ config: (c) => (c.use_gated_mlp = true) });
  await convertFails(dir, 'layer.0.mlp.gate_proj.weight');
});

test('unknown model_type, unsupported activation and bad field types name config.json and the field', async () => {
  await convertFails(await brokenCopy({ config: (c) => (c.model_type = 'vit') }), 'config.json', 'model_type "vit"', 'dinov3_vit');
  await convertFails(await brokenCopy({ config: (c) => (c.hidden_act = 'relu') }), 'config.json', 'hidden_act "relu"');
  await convertFails(await brokenCopy({ config: (c) => (c.num_hidden_layers = '2') }), 'config.json', '"num_hidden_layers"');
  await convertFails(await brokenCopy({ config: (c) => (c.num_attention_heads = 3) }), 'not divisible by num_attention_heads 3');
});

test('a directory without config.json or without weights says what it needs', async () => {
  const noConfig = await brokenCopy({});
  fs.rmSync(path.join(noConfig, 'config.json'));
  await convertFails(noConfig, 'config.json not found');
  const noWeights = await brokenCopy({});
  fs.rmSync(path.join(noWeights, 'model.safetensors'));
  await convertFails(noWeights, 'model.safetensors', noWeights);
});

test('a ConvNeXt config that disagrees with itself or its weights names the field or the tensor', async () => {
  const base = tempDir();
  await writeConvNextTestCheckpoint(base, TINY_CONVNEXT_TEST_MODEL);
  const copy = (edit: (c: Record<string, unknown>) => void) => {
    const dir = tempDir();
    fs.cpSync(base, dir, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(config);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  };
  await convertFails(copy((c) => (c.depths = [1, 1, 2])), 'config.json', 'depths has 3 stages but hidden_sizes has 4');
  await convertFails(copy((c) => (c.hidden_sizes = [16, 32, 0, 64])), 'config.json', '"hidden_sizes"');
  await convertFails(copy((c) => (c.depths = [1, 1, 3, 1])), 'stages.2.layers.2.depthwise_conv.weight');
  await convertFails(copy((c) => (c.hidden_sizes = [16, 32, 48, 72])), 'stages.3.downsample_layers.1.weight', '[64,48,2,2]', '[72,48,2,2]');
});
