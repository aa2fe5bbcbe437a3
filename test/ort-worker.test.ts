import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataType, GraphBuilder, encodeModel } from '../src/onnx/builder.js';
import { startSession, listDevices } from '../src/model/devices.js';

function doubler(): Uint8Array {
  const g = new GraphBuilder('double');
  const x = g.input('x', DataType.FLOAT, ['n']);
  g.rename(g.op('Mul', [x, g.constFloat([2])]), 'y');
  g.output('y', DataType.FLOAT, ['n']);
  return encodeModel(g, { opsets: { '': 18 } });
}

test('a session in a worker thread answers concurrent requests in order', async () => {
  const w = await startSession(doubler(), { device: 'cpu', threads: 1 }, 'doubler');
  assert.deepEqual(w.inputNames, ['x']);
  const runs = [1, 2, 3].map((k) => w.run({ x: { type: 'float32', data: Float32Array.from([k, -k]), dims: [2] } }));
  const outs = await Promise.all(runs);
  assert.deepEqual(outs.map((o) => Array.from(o.y!.data as Float32Array)), [[2, -2], [4, -4], [6, -6]]);
  // An input it owns whole is moved to the worker and comes back with the answer, as it went.
  const input = Float32Array.from([5, 6, 7]);
  const back: ArrayBuffer[][] = [];
  const out = await w.run({ x: { type: 'float32', data: input, dims: [3] } }, undefined, (buffers) => back.push(buffers));
  assert.deepEqual(Array.from(out.y!.data as Float32Array), [10, 12, 14]);
  assert.equal(input.length, 0, 'transferred, not copied');
  assert.equal(back.length, 1);
  assert.deepEqual(back[0]!.map((b) => Array.from(new Float32Array(b))), [[5, 6, 7]]);
  await w.close();
});

test('devices: cpu is offered; an unknown or unavailable device is one clear line', async () => {
  assert.ok(listDevices().some((d) => d.name === 'cpu'));
  await assert.rejects(startSession(doubler(), { device: 'nosuch' }, 'm'), /--device nosuch is not offered by this onnxruntime-node \(offered: cpu/);
  await assert.rejects(startSession(doubler(), { device: 'cuda' }, 'm'), /--device cuda is not available here .*use --device cpu, or install/);
  await assert.rejects(startSession(new Uint8Array([1, 2, 3]), { device: 'cpu' }, 'bad.onnx'), /cannot load model bad.onnx/);
});
