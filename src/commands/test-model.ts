/**
 * `dinofeat test-model <dir>`: writes the small deterministic DINOv3-shaped checkpoint (random
 * weights, NOT a real model) and its ONNX conversion, for the demo, tests and benchmarks.
 */
import { EXIT } from '../core/errors.js';
import path from 'node:path';
import { convertCheckpoint } from '../convert/convert.js';
import { TINY_TEST_MODEL, VITS16_SHAPED, writeTestCheckpoint } from '../convert/test-model.js';

export async function runTestModel(dir: string, o: { size: 'tiny' | 'vits16' }): Promise<number> {
  const spec = o.size === 'vits16' ? VITS16_SHAPED : TINY_TEST_MODEL;
  const ckpt = path.join(dir, 'checkpoint');
  await writeTestCheckpoint(ckpt, spec);
  const out = path.join(dir, 'model.onnx');
  const r = await convertCheckpoint(ckpt, out, { precision: 'fp32', sourceRepo: `dinofeat/test-${o.size} (random weights, not a real model)` });
  process.stdout.write(`dinofeat test-model: ${ckpt} and ${out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, hidden ${r.info.hiddenSize}); random weights, NOT a real model\n`);
  return EXIT.ok;
}
