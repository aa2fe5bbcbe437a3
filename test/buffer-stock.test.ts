import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferStock, ownsBuffer } from '../src/core/buffer-stock.js';

test('buffer stock: a kept buffer of the exact length comes back, else a new zeroed one', () => {
  const stock = new BufferStock(4, 1 << 20);
  const a = new ArrayBuffer(64);
  new Uint8Array(a).fill(7);
  stock.give(a);
  assert.equal(stock.take(32).byteLength, 32, 'another length is made new');
  assert.equal(stock.size, 1);
  assert.equal(stock.take(64), a, 'the kept one, contents as they were');
  assert.equal(stock.size, 0);
  const fresh = stock.take(64);
  assert.notEqual(fresh, a);
  assert.ok(new Uint8Array(fresh).every((v) => v === 0));
});

test('buffer stock: at most maxBuffers and maxBytes are kept, the oldest dropped first; empty and oversized ones are not kept', () => {
  const stock = new BufferStock(2, 100);
  const [a, b, c] = [new ArrayBuffer(40), new ArrayBuffer(40), new ArrayBuffer(40)];
  stock.give(a);
  stock.give(b);
  stock.give(c);
  assert.equal(stock.size, 2);
  assert.equal(a.byteLength, 0, 'a went first, freed at once');
  assert.equal(stock.take(40), b);
  assert.equal(stock.take(40), c);
  const [d, e] = [new ArrayBuffer(60), new ArrayBuffer(60)];
  stock.give(d);
  stock.give(e);
  assert.equal(stock.size, 1, '120 bytes would pass maxBytes');
  assert.equal(stock.take(60), e);
  assert.equal(d.byteLength, 0, 'd pushed out, freed');
  const big = new ArrayBuffer(101);
  stock.give(big);
  stock.give(new ArrayBuffer(0));
  assert.equal(stock.size, 0);
  assert.equal(big.byteLength, 0, 'too big to keep: freed');
  assert.deepEqual([stock.keeps(100), stock.keeps(101), stock.keeps(0)], [true, false, false]);
});

test('ownsBuffer: only a view over its whole, not yet transferred, unshared buffer', () => {
  const whole = new Float32Array(8);
  assert.equal(ownsBuffer(whole), true);
  assert.equal(ownsBuffer(whole.subarray(1)), false);
  assert.equal(ownsBuffer(whole.subarray(0, 4)), false);
  assert.equal(ownsBuffer(new Float32Array(new SharedArrayBuffer(32))), false);
  const moved = new Float32Array(8);
  structuredClone(moved.buffer, { transfer: [moved.buffer] });
  assert.equal(ownsBuffer(moved), false, 'detached');
});
