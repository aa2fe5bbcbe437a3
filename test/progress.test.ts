/** What the progress display says about its total: counted ahead, tar shards by bytes, or growing as found. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createProgress, Estimate } from '../src/pipeline/progress.js';

test('a total counted ahead is exact from the start, and the ETA follows from it', () => {
  const e = new Estimate();
  e.setFound(39, false); // the run itself has found 39 so far
  assert.equal(e.basis(), 'counting ahead');
  assert.equal(e.eta(), Infinity);
  e.setAhead({ images: 68, final: true, tarBytes: 0 });
  e.counts = { done: 30, failed: 2, skipped: 2 };
  assert.equal(e.total(), 68);
  assert.equal(e.basis(), 'counted ahead');
  assert.ok(e.exact());
  assert.ok(Number.isFinite(e.eta()) && e.eta() > 0);
});

test('tar shards count by bytes: the images found so far scaled by the share read', () => {
  const e = new Estimate();
  e.setAhead({ images: 10, final: false, tarBytes: 4 * 2 ** 20 });
  e.setTarRead(() => 2 ** 20);
  e.setFound(10 + 25, false); // 10 counted ahead, 25 from a quarter of the tar bytes
  assert.equal(e.total(), 10 + 100);
  assert.equal(e.basis(), 'tar by bytes: 25% of 4.0 MiB read');
  assert.ok(!e.exact());
  e.setFound(140, true);
  assert.equal(e.total(), 140);
  assert.equal(e.basis(), 'all found');
});

test('plain lines say which total they show', () => {
  let out = '';
  const stream = new Writable({ write(chunk, _enc, done) { out += String(chunk); done(); } }) as unknown as NodeJS.WriteStream;
  const p = createProgress({ label: 'extract', stream, intervalMs: 0 });
  p.setTotal(5, false);
  p.ahead({ images: 20, final: true, tarBytes: 0 });
  p.update({ done: 3, failed: 1, skipped: 1 });
  assert.match(out, /^extract: 5\/20 images \(counted ahead\), [\d.]+ img\/s, ETA \S+, 1 failed, 1 skipped\n$/);
});
