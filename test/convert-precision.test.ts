/**
 * fp16, int8 and int4 models against the fp32 model on the golden inputs, held to the floors
 * measured here (docs/precisions.md, README) minus a margin for other CPUs' kernels.
 * The golden weights are exact in float16 by design, so fp16 is also checked on the generated
 * test model, whose weights are not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_TEST_MODEL, writeTestCheckpoint } from '../src/convert/test-model.js';
import type { Precision } from '../src/model/info.js';
import { GOLDEN, PrecisionMeter, type PrecisionStats, goldenIndex, readF32, runModel } from './fixtures/reference-outputs.js';
import { tempDir } from './helpers/temp.js';

type Floor = Partial<Record<'clsMin' | 'patchMin' | 'patchMean', number>> & { maxAbs: number };

/** Measured on the golden models (all cases): see the precision table. */
const GOLDEN_FLOORS: Record<Exclude<Precision, 'fp32'>, Floor> = {
  fp16: { clsMin: 0.999999, patchMin: 0.999999, maxAbs: 1e-5 }, // measured: identical outputs
  int8: { clsMin: 0.9995, patchMin: 0.998, patchMean: 0.9998, maxAbs: 0.3 }, // measured 0.99975, 0.99934, 0.99989, 0.120
  int4: { clsMin: 0.98, patchMin: 0.95, patchMean: 0.993, maxAbs: 1.5 }, // measured 0.9918, 0.9779, 0.9953, 0.863
};
/** fp16 on weights that float16 rounds: measured min cosines > 0.999999, max abs 9e-4. */
const FP16_ROUNDED_FLOOR: Floor = { clsMin: 0.99999, patchMin: 0.99999, patchMean: 0.999999, maxAbs: 5e-3 };

const work = tempDir();

function assertFloor(label: string, s: PrecisionStats, floor: Floor): void {
  for (const key of ['clsMin', 'patchMin', 'patchMean'] as const) {
    const f = floor[key];
    if (f !== undefined) assert.ok(s[key] >= f, `${label}: ${key} ${s[key]} < floor ${f}`);
  }
  assert.ok(s.maxAbs <= floor.maxAbs, `${label}: max abs diff ${s.maxAbs} > ${floor.maxAbs}`);
}

const fmt = (s: PrecisionStats) =>
  `CLS cos min ${s.clsMin.toFixed(6)} mean ${s.clsMean.toFixed(6)}, patch cos min ${s.patchMin.toFixed(6)} mean ${s.patchMean.toFixed(6)}, max abs ${s.maxAbs.toExponential(2)}`;

/** Runs every golden input through the fp32 and the `precision` model of one checkpoint. */
async function measure(ckpt: string, precision: Precision, inputs: { file: string; shape: number[] }[], meter: PrecisionMeter, numRegisters: number): Promise<number[]> {
  const sizes: number[] = [];
  const sessions = [];
  for (const p of ['fp32', precision] as const) {
    const out = path.join(work, `${path.basename(ckpt)}-${p}.onnx`);
    if (!fs.existsSync(out)) await convertCheckpoint(ckpt, out, { precision: p });
    sizes.push(fs.statSync(out).size);
    sessions.push(await ort.InferenceSession.create(out));
  }
  for (const input of inputs) {
    const pixels = readF32(input.file);
    const [ref, got] = [await runModel(sessions[0]!, pixels, input.shape), await runModel(sessions[1]!, pixels, input.shape)];
    meter.add(ref.lastHiddenState, got.lastHiddenState, ref.dims, numRegisters);
  }
  return sizes;
}

for (const precision of ['fp16', 'int8', 'int4'] as const) {
  test(`${precision} stays within its measured floor against fp32 on every golden model and input`, async (t) => {
    const meter = new PrecisionMeter();
    for (const index of [goldenIndex('index.json'), goldenIndex('dinov2.json')]) {
      for (const [model, m] of Object.entries(index.models)) {
        const cases = index.cases.filter((c) => c.model === model);
        const inputs = [...new Set(cases.map((c) => c.input))].map((name) => index.inputs[name]!);
        const [fp32Bytes, bytes] = await measure(path.join(GOLDEN, m.dir), precision, inputs, meter, (m.config.num_register_tokens as number | undefined) ?? 0);
        assert.ok(bytes! < fp32Bytes!, `${model} ${precision}: ${bytes} bytes, fp32 ${fp32Bytes}`);
      }
    }
    const stats = meter.stats();
    t.diagnostic(`golden ${precision}: ${fmt(stats)}`);
    assertFloor(`golden ${precision}`, stats, GOLDEN_FLOORS[precision]);
  });
}

test('fp16 rounding of weights that are not exact in float16 stays within its floor; sizes shrink per precision', async (t) => {
  const ckpt = path.join(work, 'test-model');
  await writeTestCheckpoint(ckpt, TINY_TEST_MODEL);
  const index = goldenIndex('index.json');
  const inputs = Object.values(index.inputs);
  const meter = new PrecisionMeter();
  await measure(ckpt, 'fp16', inputs, meter, TINY_TEST_MODEL.numRegisters);
  const stats = meter.stats();
  t.diagnostic(`test model fp16: ${fmt(stats)}`);
  assertFloor('test model fp16', stats, FP16_ROUNDED_FLOOR);

  const sizes = [];
  for (const p of ['fp32', 'fp16', 'int8', 'int4'] as const) {
    const out = path.join(work, `sizes-${p}.onnx`);
    sizes.push((await convertCheckpoint(ckpt, out, { precision: p })).bytes);
  }
  t.diagnostic(`test model bytes fp32/fp16/int8/int4: ${sizes.join(' / ')}`);
  for (let k = 1; k < sizes.length; k++) assert.ok(sizes[k]! < sizes[k - 1]!, `sizes ${sizes}`);
});
