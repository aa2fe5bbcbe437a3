// Converting DINOv3 ConvNeXt checkpoints of the released shapes (random weights, F32 safetensors
// as the Hub's are): wall time and peak RSS of `dinofeat convert` per size and precision, each in
// its own process; then, for fp32, session load and one forward at 224x224 and 832x1216.
// The numbers in docs/precisions.md ("ConvNeXt at the released shapes") come from here.
//
//   npm run build && node scripts/convnext-scale.mjs [--sizes tiny,small,base,large] [--precisions fp32,fp16,int8,int4] [--no-run]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist', p);
const arg = (name, fallback) => {
  const k = process.argv.indexOf(name);
  return k > 0 ? process.argv[k + 1] : fallback;
};
const sizes = arg('--sizes', 'tiny,small,base,large').split(',');
const precisions = arg('--precisions', 'fp32,fp16,int8,int4').split(',');
const forward = !process.argv.includes('--no-run');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dinofeat-convnext-scale-'));
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/** Runs `code` (an ES module body) in a fresh node and returns the JSON it prints last. */
function child(code) {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', maxBuffer: 2 ** 26 });
  return JSON.parse(out.trim().split('\n').at(-1));
}

const results = [];
try {
  for (const size of sizes) {
    const ckpt = path.join(work, size);
    child(`
      const { CONVNEXT_RELEASED_SHAPES, writeConvNextTestCheckpoint } = await import(${JSON.stringify(dist('convert/test-convnext.js'))});
      await writeConvNextTestCheckpoint(${JSON.stringify(ckpt)}, { ...CONVNEXT_RELEASED_SHAPES[${JSON.stringify(size)}], seed: 1 });
      console.log('{}');`);
    const checkpointBytes = fs.statSync(path.join(ckpt, 'model.safetensors')).size;
    for (const precision of precisions) {
      const out = path.join(work, `${size}-${precision}.onnx`);
      const r = child(`
        const { convertCheckpoint } = await import(${JSON.stringify(dist('convert/convert.js'))});
        const r = await convertCheckpoint(${JSON.stringify(ckpt)}, ${JSON.stringify(out)}, { precision: ${JSON.stringify(precision)} });
        console.log(JSON.stringify({ seconds: r.seconds, bytes: r.bytes, peakRssMiB: process.resourceUsage().maxRSS / 1024 }));`);
      const row = { size, precision, checkpointMiB: checkpointBytes / 2 ** 20, seconds: r.seconds, fileMiB: r.bytes / 2 ** 20, peakRssMiB: r.peakRssMiB };
      if (forward && precision === 'fp32') {
        Object.assign(row, child(`
          const { default: ort } = await import(${JSON.stringify(dist('model/ort.js'))});
          const t0 = performance.now();
          const s = await ort.InferenceSession.create(${JSON.stringify(out)}, { intraOpNumThreads: 2 });
          const loadMs = performance.now() - t0;
          const ms = {};
          for (const [h, w] of [[224, 224], [1216, 832]]) {
            const x = new ort.Tensor('float32', new Float32Array(3 * h * w).map((_, k) => Math.sin(k)), [1, 3, h, w]);
            await s.run({ pixel_values: x });
            const t = performance.now();
            const o = await s.run({ pixel_values: x });
            ms[w + 'x' + h] = { ms: performance.now() - t, dims: o.last_hidden_state.dims };
          }
          console.log(JSON.stringify({ loadMs, forward: ms, runPeakRssMiB: process.resourceUsage().maxRSS / 1024 }));`));
      }
      console.log(JSON.stringify(row));
      results.push(row);
      fs.rmSync(out, { force: true });
      fs.rmSync(`${out}.data`, { force: true });
    }
    fs.rmSync(ckpt, { recursive: true });
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
console.table(results.map(({ forward: f, ...r }) => ({ ...r, ...(f ? Object.fromEntries(Object.entries(f).map(([k, v]) => [k, `${v.ms.toFixed(0)} ms [${v.dims}]`])) : {}) })));
