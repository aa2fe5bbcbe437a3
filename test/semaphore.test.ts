import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Semaphore } from '../src/pipeline/semaphore.js';

test('units are weighed, waiters are served in order, and a request over the capacity runs alone', async () => {
  const s = new Semaphore(10);
  const order: string[] = [];
  assert.equal(await s.acquire(6), 6);
  const big = s.acquire(25).then((n) => { order.push(`big ${n}`); return n; });
  const small = s.acquire(1).then((n) => { order.push(`small ${n}`); return n; });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], 'the small request waits behind the big one although 4 units are free');
  s.release(6);
  assert.equal(await big, 10, 'the big request takes the whole capacity');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['big 10'], 'nothing else runs beside it');
  s.release(10);
  assert.equal(await small, 1);
  assert.deepEqual(order, ['big 10', 'small 1']);
});
