/**
 * fp16, int8 and int4 models against the fp32 model on the golden inputs, held to the floors
 * measured here (docs/precisions.md, README) minus a margin for other CPUs' kernels.
 * The golden weights are exact in float16 by design, so fp16 is also checked on the generated
 * test model, whose weights are not: there its outputs must differ from fp32 by the measured
 * rounding, no more and no less. Every fp16 file must hold its Linear weights as FLOAT16
 * initializers (read with the onnx package) and shrink by exactly their halved bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { TINY_TEST_MODEL, VITS16_SHAPED, writeTestCheckpoint } from '../src/convert/test-model.js';
import type { Precision } from '../src/model/info.js';
import { GOLDEN, PrecisionMeter, type PrecisionStats, goldenIndex, readF32, runModel } from './fixtures/reference-outputs.js';
import { pythonJson } from './helpers/python.js';
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
/** ...and the rounding must show: a "fp16" model that kept fp32 weights (or rounded nothing) gives 0. */
const FP16_ROUNDED_MIN_ABS = 1e-4;

interface Initializer {
  name: string;
  type: string;
  dims: number[];
  bytes: number;
}

/** The initializers of an ONNX file as the onnx package reads them (an independent reader). */
function initializers(file: string): Promise<Initializer[]> {
  const code = 'import json,sys,onnx; m=onnx.load(sys.argv[1]); print(json.dumps([{"name":i.name,"type":onnx.TensorProto.DataType.Name(i.data_type),"dims":list(i.dims),"bytes":len(i.raw_data)} for i in m.graph.initializer]))';
  return pythonJson<Initializer[]>(['-c', code, file]);
}

/** A transformer block's Linear weight ([in, out] MatMul operand), the tensors fp16 stores in half. */
const isLinearWeight = (i: Initializer) => /(^|\.)layer\.\d+\..*\.weight$/.test(i.name) && i.dims.length === 2;

/**
 * The fp16 file holds every Linear weight, and only those, as FLOAT16 (2 bytes a value), and is
 * the fp32 file less their halved bytes, give or take a Cast node each (measured 67-68 bytes).
 */
async function assertFp16File(label: string, fp32: string, fp16: string): Promise<void> {
  const inits = await initializers(fp16);
  const linear = inits.filter(isLinearWeight);
  assert.ok(linear.length > 0, `${label}: no Linear weights found`);
  for (const i of inits) {
    assert.equal(i.type === 'FLOAT16', isLinearWeight(i), `${label}: ${i.name} is ${i.type}`);
    if (i.type === 'FLOAT16') assert.equal(i.bytes, 2 * i.dims.reduce((a, b) => a * b, 1), `${label}: ${i.name} bytes`);
  }
  const halved = linear.reduce((a, i) => a + i.bytes, 0);
  const saved = fs.statSync(fp32).size - fs.statSync(fp16).size;
  assert.ok(Math.abs(saved - halved) <= 100 * linear.length, `${label}: fp16 file ${saved} bytes smaller than fp32, Linear weights halved ${halved}`);
}

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

const onnxPath = (ckpt: string, precision: Precision) => path.join(work, `${path.basename(ckpt)}-${precision}.onnx`);

/** Runs every golden input through the fp32 and the `precision` model of one checkpoint. */
async function measure(ckpt: string, precision: Precision, inputs: { file: string; shape: number[] }[], meter: PrecisionMeter, numRegisters: number): Promise<number[]> {
  const sizes: number[] = [];
  const sessions = [];
  for (const p of ['fp32', precision] as const) {
    const out = onnxPath(ckpt, p);
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
        if (precision === 'fp16') await assertFp16File(model, onnxPath(m.dir, 'fp32'), onnxPath(m.dir, 'fp16'));
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
  assert.ok(stats.maxAbs >= FP16_ROUNDED_MIN_ABS, `test model fp16: max abs diff ${stats.maxAbs}: the weights were not rounded`);
  await assertFp16File('test model', onnxPath(ckpt, 'fp32'), onnxPath(ckpt, 'fp16'));

  const sizes = [];
  for (const p of ['fp32', 'fp16', 'int8', 'int4'] as const) {
    const out = path.join(work, `sizes-${p}.onnx`);
    sizes.push((await convertCheckpoint(ckpt, out, { precision: p })).bytes);
  }
  t.diagnostic(`test model bytes fp32/fp16/int8/int4: ${sizes.join(' / ')}`);
  for (let k = 1; k < sizes.length; k++) assert.ok(sizes[k]! < sizes[k - 1]!, `sizes ${sizes}`);
});

test('fp16 halves a ViT-S/16-sized file: ratio 0.509 measured (the fp32 patch embedding, norms and biases are the rest)', async (t) => {
  const ckpt = path.join(work, 'vits16');
  await writeTestCheckpoint(ckpt, VITS16_SHAPED);
  for (const p of ['fp32', 'fp16'] as const) await convertCheckpoint(ckpt, onnxPath(ckpt, p), { precision: p });
  const ratio = fs.statSync(onnxPath(ckpt, 'fp16')).size / fs.statSync(onnxPath(ckpt, 'fp32')).size;
  t.diagnostic(`ViT-S/16 fp16 / fp32 file size: ${ratio.toFixed(4)}`);
  assert.ok(ratio >= 0.505 && ratio <= 0.513, `fp16 / fp32 = ${ratio}`);
  await assertFp16File('ViT-S/16', onnxPath(ckpt, 'fp32'), onnxPath(ckpt, 'fp16'));
});
