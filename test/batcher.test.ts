import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Batcher } from '../src/pipeline/batcher.js';

const item = (bucketKey: string, id: number) => ({ bucketKey, id });

test('batches hold one bucket each and are released when full', () => {
  const b = new Batcher<ReturnType<typeof item>>(2, 100);
  assert.deepEqual(b.add(item('a', 1)), []);
  assert.deepEqual(b.add(item('b', 2)), []);
  assert.deepEqual(b.add(item('a', 3)).map((x) => x.map((y) => y.id)), [[1, 3]]);
  assert.equal(b.size, 1);
  assert.deepEqual(b.drain().map((x) => x.map((y) => y.id)), [[2]]);
  assert.equal(b.size, 0);
});

test('too many waiting images release the fullest partial batch early (memory bound)', () => {
  const b = new Batcher<ReturnType<typeof item>>(4, 3);
  b.add(item('a', 1));
  b.add(item('b', 2));
  b.add(item('a', 3));
  const ready = b.add(item('c', 4));
  assert.deepEqual(ready.map((x) => x.map((y) => y.id)), [[1, 3]]);
  assert.equal(b.size, 2);
  const all: number[] = [];
  for (const batch of b.drain()) for (const x of batch) all.push(x.id);
  assert.deepEqual(all.sort(), [2, 4]);
});

test('takeFullest hands over the fullest partial batch at any time', () => {
  const b = new Batcher<ReturnType<typeof item>>(4, 100);
  assert.equal(b.takeFullest(), undefined);
  b.add(item('a', 1));
  b.add(item('b', 2));
  b.add(item('b', 3));
  assert.deepEqual(b.takeFullest()?.map((x) => x.id), [2, 3]);
  assert.deepEqual(b.takeFullest()?.map((x) => x.id), [1]);
  assert.equal(b.size, 0);
});
