/** releaseBuffer (src/core/release-buffer.ts): a dead sharp frame's memory goes back at once; shared memory never does. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { releaseBuffer } from '../src/core/release-buffer.js';

const MiB = 2 ** 20;
const nextTurn = () => new Promise((r) => setImmediate(r));
const rssMiB = () => process.memoryUsage().rss / MiB;

test('a sharp frame is freed by the time this thread turns, not at a garbage collection', async () => {
  // 78 MB: above glibc's mmap threshold (also at extract's 64 MiB), so its freeing shows in RSS.
  const side = 5100;
  const frame = await sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } }).raw().toBuffer();
  assert.equal(frame.length, side * side * 3);
  const withFrame = rssMiB();
  assert.equal(releaseBuffer(frame), true);
  assert.equal(frame.length, 0, 'the view is empty afterwards');
  await nextTurn();
  const freed = withFrame - rssMiB();
  // Measured: the whole 74 MiB; the margin is for the test runner's own allocations meanwhile.
  assert.ok(freed > 70, `RSS fell by ${freed.toFixed(1)} MiB, expected the frame's 74 MiB`);
});

test('memory others may see is left to the collector: pooled Buffers, views into a larger buffer, shared memory', () => {
  const pooled = Buffer.from('a few bytes from the shared pool');
  const neighbour = Buffer.from('its neighbour in the same pool');
  assert.ok(pooled.buffer === neighbour.buffer, 'both from one pool slab');
  assert.equal(releaseBuffer(pooled), false);
  assert.equal(neighbour.toString(), 'its neighbour in the same pool');

  const whole = new Uint8Array(1 << 20).fill(7);
  const part = whole.subarray(16);
  assert.equal(releaseBuffer(part), false);
  assert.equal(whole.length, 1 << 20);
  const head = whole.subarray(0, 1024);
  assert.equal(releaseBuffer(head), false, 'a view of the start, not the whole');
  assert.equal(whole[5], 7);

  const shared = new Uint8Array(new SharedArrayBuffer(1 << 16));
  assert.equal(releaseBuffer(shared), false);
  assert.equal(shared.length, 1 << 16);

  const own = Buffer.allocUnsafeSlow(1 << 16);
  assert.equal(releaseBuffer(own), true);
  assert.equal(own.length, 0);
  assert.equal(releaseBuffer(own), false, 'an empty buffer: nothing to free');
});
