import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RowEncoderThread } from '../src/shard/row-encoder.js';
import { encodeRow, type FeatureRow, type TensorDtype } from '../src/shard/schema.js';
import { HIDDEN, NUM_REGISTERS, makeRow } from './fixtures/feature-rows.js';

/** Rows whose tensors are views into one buffer, as a batch's rows are views into the model's output. */
function batchRows(count: number): FeatureRow[] {
  const own = Array.from({ length: count }, (_, i) => makeRow(i, true));
  const total = own.reduce((n, r) => n + r.cls.length + r.registers!.length + r.patches.length, 0);
  const output = new Float32Array(total);
  let at = 0;
  const place = (v: Float32Array) => {
    output.set(v, at);
    at += v.length;
    return output.subarray(at - v.length, at);
  };
  return own.map((r) => ({ ...r, cls: place(r.cls), registers: place(r.registers!), patches: place(r.patches) }));
}

const clone = (rows: FeatureRow[]): FeatureRow[] => rows.map((r) => ({ ...r, cls: r.cls.slice(), registers: r.registers!.slice(), patches: r.patches.slice() }));

test('rows encoded on the thread are what encodeRow makes here, in order; their tensors moved there', async () => {
  const thread = new RowEncoderThread();
  try {
    for (const dtype of ['float16', 'float32'] as TensorDtype[]) {
      const shape = { hiddenSize: HIDDEN, numRegisters: NUM_REGISTERS, registersKept: true, dtype };
      const rows = batchRows(5);
      const expected = clone(rows).map((r) => encodeRow(r, shape));
      const got = await thread.encode(rows, shape);
      assert.equal(got.length, expected.length);
      for (let i = 0; i < got.length; i++) {
        const g = got[i]!, e = expected[i]!;
        assert.equal(g.key, e.key);
        assert.equal(g.crop_w, e.crop_w);
        assert.deepEqual([...g.cls], [...e.cls], `${dtype} row ${i} cls`);
        assert.deepEqual(Buffer.from(g.patches), Buffer.from(e.patches), `${dtype} row ${i} patches`);
        assert.deepEqual(Buffer.from(g.registers!), Buffer.from(e.registers!), `${dtype} row ${i} registers`);
      }
      assert.equal(rows[0]!.patches.length, 0, 'the caller\'s views read as empty: the batch\'s buffer moved, not copied');
    }
  } finally {
    await thread.close();
  }
});

test('a row that does not fit the shape rejects the call with encodeRow\'s message; the thread goes on', async () => {
  const thread = new RowEncoderThread();
  try {
    const shape = { hiddenSize: HIDDEN, numRegisters: NUM_REGISTERS, registersKept: true, dtype: 'float16' as const };
    const rows = batchRows(2);
    rows[1] = { ...rows[1]!, patches: rows[1]!.patches.subarray(1) };
    await assert.rejects(thread.encode(rows, shape), /row dir 1\/img_1\.jpg: patches has \d+ values, expected/);
    assert.equal((await thread.encode(batchRows(1), shape)).length, 1);
  } finally {
    await thread.close();
  }
});
