/**
 * The hand-written safetensors reader and writer against Python's `safetensors` and torch: files
 * we write load in Python with torch's own float32 -> F16/BF16 rounding, bit for bit; files Python
 * writes (single, sharded with an index, 'model.' prefix) read here to torch's float32 widening,
 * bit for bit. Broken files fail with one line naming the tensor and the file.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openCheckpoint, writeSafetensors, type StDtype } from '../src/convert/safetensors.js';
import { UserError } from '../src/core/errors.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

const work = tempDir();

const DTYPES: StDtype[] = ['F32', 'F16', 'BF16'];

/** Rounding ties, half and bfloat16 subnormals and overflow, signed zeros, inf, NaN, and ordinary values. */
function testValues(): Float32Array {
  const special = [0, -0, 1, -1, 65504, 65520, 1e6, -3e38, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, 1e-39, 0.1, 1 / 3, Infinity, -Infinity, NaN];
  const ties = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20];
  const spread = Array.from({ length: 4000 }, (_, k) => Math.sin(k * 12.9898) * 10 ** ((k % 16) - 9));
  return Float32Array.from([...special, ...ties, ...spread]);
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Bit-identical float32, except that any NaN matches any NaN (payloads differ between converters). */
function assertSameBits(actual: Float32Array, expectedBytes: Buffer, what: string): void {
  const want = new Float32Array(expectedBytes.buffer.slice(expectedBytes.byteOffset, expectedBytes.byteOffset + expectedBytes.length));
  assert.equal(actual.length, want.length, what);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const w = new Uint32Array(want.buffer);
  for (let k = 0; k < a.length; k++) {
    if (a[k] !== w[k] && !(Number.isNaN(actual[k]) && Number.isNaN(want[k]))) assert.fail(`${what}[${k}]: ${a[k]!.toString(16)} != ${w[k]!.toString(16)}`);
  }
}

/**
 * Python, once: checks our files against torch's conversion of the same values, then writes its
 * own checkpoints and the float32 torch widens each tensor to (expected/<dir>--<name>.f32).
 */
const PYTHON = `
import json, os, sys
import numpy as np, torch
from safetensors import safe_open
from safetensors.torch import save_file
w = sys.argv[1]
v = torch.from_numpy(np.fromfile(os.path.join(w, 'values.f32'), dtype='<f4'))
torch_dtype = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16}
bits = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
report = {}
for name, dt in torch_dtype.items():
    with safe_open(os.path.join(w, 'ours-' + name + '.safetensors'), 'pt') as f:
        t = f.get_tensor('values')
        m = f.get_tensor('matrix')
        meta = f.metadata()
    want = v.to(dt)
    nan = torch.isnan(v)  # any NaN pattern is a NaN; torch's own vary by CPU path
    report[name] = {
        'dtype': str(t.dtype), 'matrix_shape': list(m.shape), 'metadata': meta,
        'bit_mismatches': int((t.view(bits[dt]) != want.view(bits[dt]))[~nan].sum()),
        'nan_kept': bool(torch.equal(torch.isnan(t.float()), nan)),
        'matrix_equal': bool(torch.equal(m.flatten().view(bits[dt]), want[100:100 + m.numel()].view(bits[dt]))),
    }
def save(dir, tensors, file='model.safetensors'):
    os.makedirs(os.path.join(w, dir, 'expected'), exist_ok=True)
    save_file(tensors, os.path.join(w, dir, file), metadata={'format': 'pt'})
    for k, t in tensors.items():
        t.float().numpy().tofile(os.path.join(w, dir, 'expected', k + '.f32'))
single = {'values_' + n: v.to(dt) for n, dt in torch_dtype.items()}
single['grid_bf16'] = v[:2 * 3 * 5].reshape(2, 3, 5).to(torch.bfloat16)
save('py-single', single)
shards = [
    {'embeddings.cls_token': v[:8].reshape(1, 1, 8), 'layer.0.norm1.weight': v[8:16].to(torch.float16)},
    {'layer.0.mlp.up_proj.weight': v[16:48].reshape(4, 8).to(torch.bfloat16), 'norm.bias': v[48:56]},
]
weight_map = {}
for i, s in enumerate(shards):
    file = 'model-%05d-of-%05d.safetensors' % (i + 1, len(shards))
    save('py-sharded', s, file)
    weight_map.update({k: file for k in s})
with open(os.path.join(w, 'py-sharded', 'model.safetensors.index.json'), 'w') as f:
    json.dump({'metadata': {'total_size': 0}, 'weight_map': weight_map}, f)
save('py-prefixed', {'model.embeddings.cls_token': v[:8].reshape(1, 1, 8).to(torch.bfloat16), 'model.norm.weight': v[8:16]})
print(json.dumps(report))
`;

let report: Record<StDtype, { dtype: string; matrix_shape: number[]; metadata: Record<string, string>; bit_mismatches: number; nan_kept: boolean; matrix_equal: boolean }>;
const values = testValues();

before(async () => {
  fs.writeFileSync(path.join(work, 'values.f32'), bytesOf(values));
  for (const dtype of DTYPES) {
    // From the ordinary values (no NaN), so Python can compare it with torch.equal.
    const matrix = values.slice(100, 100 + 6 * 7);
    await writeSafetensors(
      path.join(work, `ours-${dtype}.safetensors`),
      { values: { dtype, shape: [values.length], data: values }, matrix: { dtype, shape: [6, 7], data: matrix } },
      { format: 'pt', writer: 'dinofeat' },
    );
  }
  report = await pythonJson<typeof report>(['-c', PYTHON, work]);
});

/** A directory holding one of our files as its model.safetensors. */
function asCheckpoint(file: string, name: string): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(file, path.join(dir, 'model.safetensors'));
  return dir;
}

function expected(dir: string, name: string): Buffer {
  return fs.readFileSync(path.join(work, dir, 'expected', `${name}.f32`));
}

test('files we write load in Python with torch-exact F32/F16/BF16 bits, shapes and metadata', () => {
  for (const dtype of DTYPES) {
    const r = report[dtype];
    assert.equal(r.dtype, { F32: 'torch.float32', F16: 'torch.float16', BF16: 'torch.bfloat16' }[dtype]);
    assert.equal(r.bit_mismatches, 0, `${dtype}: values that round differently from torch`);
    assert.ok(r.nan_kept, `${dtype}: NaN must stay NaN and nothing else become one`);
    assert.deepEqual(r.matrix_shape, [6, 7]);
    assert.ok(r.matrix_equal, dtype);
    assert.deepEqual(r.metadata, { format: 'pt', writer: 'dinofeat' });
  }
});

test("files Python writes read back to torch's float32 widening, bit for bit", () => {
  const ckpt = openCheckpoint(path.join(work, 'py-single'));
  assert.deepEqual(ckpt.names().sort(), ['grid_bf16', 'values_BF16', 'values_F16', 'values_F32']);
  for (const name of ckpt.names()) assert.deepEqual(bytesOf(ckpt.read(name)), expected('py-single', name), name);
  assert.deepEqual(ckpt.info('grid_bf16'), { name: 'grid_bf16', dtype: 'BF16', shape: [2, 3, 5], file: path.join(work, 'py-single', 'model.safetensors') });
  assert.deepEqual(bytesOf(ckpt.read('values_F32')), bytesOf(values));
  ckpt.close();
});

test('our own files read back: F32 exactly, F16 and BF16 as torch rounded them', () => {
  for (const dtype of DTYPES) {
    const ckpt = openCheckpoint(asCheckpoint(path.join(work, `ours-${dtype}.safetensors`), `ours-${dtype}`));
    const read = ckpt.read('values', [values.length]);
    // py-single holds torch's rounding of the same values in each dtype, widened by torch.
    assertSameBits(read, expected('py-single', `values_${dtype}`), dtype);
    assert.deepEqual(bytesOf(ckpt.read('matrix', [6, 7])), bytesOf(read.subarray(100, 142)), dtype);
    ckpt.close();
  }
});

test('a sharded checkpoint reads through its index; sha256 covers the shards in name order', async () => {
  const dir = path.join(work, 'py-sharded');
  const ckpt = openCheckpoint(dir);
  assert.deepEqual(ckpt.names().sort(), ['embeddings.cls_token', 'layer.0.mlp.up_proj.weight', 'layer.0.norm1.weight', 'norm.bias']);
  for (const name of ckpt.names()) assert.deepEqual(bytesOf(ckpt.read(name)), expected('py-sharded', name), name);
  assert.equal(ckpt.info('norm.bias').file, path.join(dir, 'model-00002-of-00002.safetensors'));
  assert.equal(ckpt.info('layer.0.mlp.up_proj.weight').dtype, 'BF16');
  const h = createHash('sha256');
  for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) h.update(fs.readFileSync(path.join(dir, f)));
  assert.equal(await ckpt.sha256(), h.digest('hex'));
  ckpt.close();
});

test("a 'model.' prefix on every key is dropped; on only some keys it is kept", async () => {
  const ckpt = openCheckpoint(path.join(work, 'py-prefixed'));
  assert.deepEqual(ckpt.names().sort(), ['embeddings.cls_token', 'norm.weight']);
  assert.ok(ckpt.has('norm.weight') && !ckpt.has('model.norm.weight'));
  assert.equal(ckpt.info('embeddings.cls_token').name, 'embeddings.cls_token');
  assert.deepEqual(bytesOf(ckpt.read('embeddings.cls_token', [1, 1, 8])), expected('py-prefixed', 'model.embeddings.cls_token'));
  ckpt.close();

  const mixed = path.join(work, 'mixed');
  fs.mkdirSync(mixed);
  const one = { dtype: 'F32' as const, shape: [1], data: new Float32Array([1]) };
  await writeSafetensors(path.join(mixed, 'model.safetensors'), { 'model.a': one, b: one });
  const m = openCheckpoint(mixed);
  assert.deepEqual(m.names().sort(), ['b', 'model.a']);
  m.close();
});

/** Asserts a one-line UserError whose message contains every fragment. */
function failsWith(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `"${e.message}" should mention ${f}`);
    return true;
  });
}

/** A copy of ours-F32 as a checkpoint dir, its bytes edited. */
function brokenCopy(name: string, edit: (bytes: Buffer) => Buffer): { dir: string; file: string } {
  const dir = asCheckpoint(path.join(work, 'ours-F32.safetensors'), name);
  const file = path.join(dir, 'model.safetensors');
  fs.writeFileSync(file, edit(fs.readFileSync(file)));
  return { dir, file };
}

test('a missing tensor or a wrong shape names the tensor, the file and both shapes', () => {
  const dir = path.join(work, 'ours-F32');
  const file = path.join(dir, 'model.safetensors');
  const ckpt = openCheckpoint(dir);
  failsWith(() => ckpt.info('layer.9.norm1.weight'), 'layer.9.norm1.weight', file);
  failsWith(() => ckpt.read('layer.9.norm1.weight'), 'layer.9.norm1.weight', file);
  failsWith(() => ckpt.read('matrix', [7, 6]), 'tensor matrix', file, 'shape [6,7]', 'expected [7,6]');
  ckpt.close();
  const sharded = openCheckpoint(path.join(work, 'py-sharded'));
  failsWith(() => sharded.read('norm.weight'), 'norm.weight', path.join(work, 'py-sharded', 'model.safetensors.index.json'));
  sharded.close();
});

test('truncated files, corrupt headers and unsupported dtypes name the file (and the tensor)', () => {
  let b = brokenCopy('truncated', (bytes) => bytes.subarray(0, bytes.length - 10));
  // Tensors are stored in insertion order, so the last one, 'matrix', is cut short.
  failsWith(() => openCheckpoint(b.dir), 'tensor matrix', b.file, 'truncated');

  b = brokenCopy('stub', (bytes) => bytes.subarray(0, 5));
  failsWith(() => openCheckpoint(b.dir), b.file, 'not a safetensors file');

  b = brokenCopy('huge-header', (bytes) => Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), bytes.subarray(8)]));
  failsWith(() => openCheckpoint(b.dir), b.file, 'corrupt safetensors header');

  b = brokenCopy('not-json', (bytes) => Buffer.concat([bytes.subarray(0, 8), Buffer.from('['), bytes.subarray(9)]));
  failsWith(() => openCheckpoint(b.dir), b.file, 'not JSON');

  // Same byte length, so the offsets still fit: only the dtype is wrong.
  b = brokenCopy('int32', (bytes) => Buffer.from(bytes.toString('latin1').replace('"dtype":"F32","shape":[6,7]', '"dtype":"I32","shape":[6,7]'), 'latin1'));
  failsWith(() => openCheckpoint(b.dir), 'tensor matrix', b.file, 'dtype I32');

  b = brokenCopy('bad-shape', (bytes) => Buffer.from(bytes.toString('latin1').replace('"shape":[6,7]', '"shape":[6,"7"]'), 'latin1'));
  failsWith(() => openCheckpoint(b.dir), 'tensor matrix', b.file, 'corrupt header entry');
});

test('index problems: no weights, a missing shard, a shard that lacks a tensor the index puts there', () => {
  const empty = path.join(work, 'empty');
  fs.mkdirSync(empty);
  failsWith(() => openCheckpoint(empty), 'model.safetensors', empty);

  const copy = (name: string) => {
    const dir = path.join(work, name);
    fs.cpSync(path.join(work, 'py-sharded'), dir, { recursive: true });
    return dir;
  };
  let dir = copy('missing-shard');
  fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
  failsWith(() => openCheckpoint(dir), path.join(dir, 'model-00002-of-00002.safetensors'), 'model.safetensors.index.json');

  dir = copy('wrong-shard');
  const index = path.join(dir, 'model.safetensors.index.json');
  const json = JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> };
  json.weight_map['norm.bias'] = 'model-00001-of-00002.safetensors';
  fs.writeFileSync(index, JSON.stringify(json));
  failsWith(() => openCheckpoint(dir), 'norm.bias', path.join(dir, 'model-00001-of-00002.safetensors'), index);

  fs.writeFileSync(index, '{"weight_map": 3}');
  failsWith(() => openCheckpoint(dir), index, 'weight_map');
});
