import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { DataType, GraphBuilder, encodeModel, f, i, ints, typedBytes } from '../src/onnx/builder.js';
import { writeModel } from '../src/onnx/writer.js';
import { readOnnxHeader } from '../src/onnx/metadata-reader.js';
import { pythonStdout } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

function smallGraph(): GraphBuilder {
  const g = new GraphBuilder('t');
  const x = g.input('x', DataType.FLOAT, ['batch', 3]);
  const w = g.initializer('w', DataType.FLOAT, [3, 2], typedBytes(Float32Array.from([1, 2, 3, 4, 5, 6])));
  const y = g.op('MatMul', [x, w]);
  const z = g.op('Add', [y, g.constFloat([-0.5])]);
  const t = g.op('Transpose', [z], { perm: ints([1, 0]) });
  const r = g.op('LeakyRelu', [t], { alpha: f(0.25) });
  const c = g.op('Concat', [r, r], { axis: i(-1) });
  g.rename(c, 'out');
  g.output('out', DataType.FLOAT, [2, 'twice_batch']);
  return g;
}

const META = { 'dinofeat.patch_size': '16', note: 'ünïcode ✓' };

test('a built graph runs in ONNX Runtime with the expected numbers', async () => {
  const bytes = encodeModel(smallGraph(), { opsets: { '': 18 }, metadata: META });
  const s = await ort.InferenceSession.create(bytes);
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 0, -1, 0, 1, 0]), [2, 3]) });
  // x·w = [[1-5, 2-6], [3, 4]] = [[-4,-4],[3,4]]; -0.5; transpose; leaky relu 0.25
  const expect = [-4.5 * 0.25, 2.5, -4.5 * 0.25, 2.5, -4.5 * 0.25, 3.5, -4.5 * 0.25, 3.5];
  assert.deepEqual(Array.from(out.out!.data as Float32Array), expect);
  assert.deepEqual(out.out!.dims, [2, 4]);
});

test('writeModel with external data round-trips and metadata is readable without loading the graph', async () => {
  const dir = tempDir();
  const g = new GraphBuilder('ext');
  const x = g.input('x', DataType.FLOAT, [1, 512]);
  const big = new Float32Array(512 * 4).map((_, k) => (k % 7) - 3);
  const w = g.initializer('w', DataType.FLOAT, [512, 4], { size: big.byteLength, produce: () => typedBytes(big) });
  g.rename(g.op('MatMul', [x, w]), 'y');
  g.output('y', DataType.FLOAT, [1, 4]);
  const file = path.join(dir, 'm.onnx');
  const res = await writeModel(g, file, { opsets: { '': 18 }, metadata: META, forceExternal: true });
  assert.ok(res.dataPath && fs.existsSync(res.dataPath));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['m.onnx', 'm.onnx.data']);
  const s = await ort.InferenceSession.create(file);
  const ones = new Float32Array(512).fill(1);
  const y = (await s.run({ x: new ort.Tensor('float32', ones, [1, 512]) })).y!.data as Float32Array;
  for (let c = 0; c < 4; c++) {
    let sum = 0;
    for (let r = 0; r < 512; r++) sum += big[r * 4 + c]!;
    assert.equal(y[c], sum);
  }
  const header = readOnnxHeader(file);
  assert.equal(header.producerName, 'dinofeat');
  assert.deepEqual(header.metadata, META);
});

test('onnx.checker accepts the built model (independent reader)', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'm.onnx');
  await writeModel(smallGraph(), file, { opsets: { '': 18 }, metadata: META });
  const out = (await pythonStdout(['-c', `import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print({p.key:p.value for p in m.metadata_props}['note'])`, file])).trim();
  assert.equal(out, META.note);
});
