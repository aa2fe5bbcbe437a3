/**
 * A real-sized ViT-S/16 checkpoint (the released shapes, 21,596,544 parameters, random weights)
 * converts in seconds and the model runs at 224x224 and at a large bucket, 832x1216.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { openCheckpoint } from '../src/convert/safetensors.js';
import { VITS16_SHAPED, writeTestCheckpoint } from '../src/convert/test-model.js';
import { runModel } from './fixtures/reference-outputs.js';
import { tempDir } from './helpers/temp.js';

test('ViT-S/16-sized checkpoint: converts in seconds, runs at 224x224 and 832x1216', async (t) => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'vits16');
  await writeTestCheckpoint(ckpt, VITS16_SHAPED);
  const c = openCheckpoint(ckpt);
  assert.equal(c.names().reduce((a, n) => a + c.info(n).shape.reduce((x, y) => x * y, 1), 0), 21_596_544);
  c.close();

  const out = path.join(dir, 'vits16.onnx');
  const r = await convertCheckpoint(ckpt, out, { precision: 'fp32' });
  t.diagnostic(`convert: ${r.seconds.toFixed(2)} s, ${(r.bytes / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(r.seconds < 20, `conversion took ${r.seconds} s`);

  const session = await ort.InferenceSession.create(out);
  for (const [h, w] of [[224, 224], [832, 1216]] as const) {
    const pixels = Float32Array.from({ length: 3 * h * w }, (_, k) => Math.sin(k * 0.001));
    const started = performance.now();
    const o = await runModel(session, pixels, [1, 3, h, w]);
    t.diagnostic(`${h}x${w} (HxW): ${(performance.now() - started).toFixed(0)} ms`);
    assert.deepEqual(o.dims, [1, 1 + 4 + (h / 16) * (w / 16), 384]);
    assert.ok(o.lastHiddenState.every(Number.isFinite));
    assert.deepEqual(o.poolerOutput, o.lastHiddenState.subarray(0, 384));
  }
});
