// npm run demo: the main job on the shipped example photos with the small test model.
// The model is generated (deterministic random weights, NOT a real model) on first use.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'dinofeat.js');
const modelDir = path.join(root, 'models', 'test-tiny');
const model = path.join(modelDir, 'model.onnx');
const out = path.join(root, 'dinofeat-cache', 'demo');
const run = (args) => {
  console.log(`\n$ dinofeat ${args.join(' ')}`);
  try {
    execFileSync(process.execPath, [cli, ...args], { stdio: 'inherit', cwd: root });
  } catch (e) {
    if (e.status !== 1) throw e; // 1 = some images failed, shown in the summary
  }
};

if (!fs.existsSync(model)) run(['test-model', path.relative(root, modelDir)]);
run(['extract', 'examples/images', '--model', path.relative(root, model), '--out', path.relative(root, out), '--buckets', 'sdxl', '--dino-scale', '0.25', '--overwrite']);

// A few rows, read back with the project's own shard reader.
const { readShardRows } = await import(path.join(root, 'dist', 'shard', 'shard-reader.js'));
const shards = fs.readdirSync(path.join(out, 'shards')).filter((f) => f.endsWith('.parquet')).sort();
console.log('\nfirst rows of', path.join(path.relative(root, out), 'shards', shards[0]));
const rows = await readShardRows(path.join(out, 'shards', shards[0]), { columns: ['key', 'width', 'height', 'bucket_width', 'bucket_height', 'grid_h', 'grid_w', 'crop_w', 'crop_h', 'cls'] });
for (const r of rows.slice(0, 6)) {
  const cls = Array.from(r.cls.slice(0, 3), (v) => v.toFixed(3)).join(', ');
  console.log(`  ${r.key.padEnd(24)} ${`${r.width}x${r.height}`.padEnd(9)} → ${r.bucket_width}x${r.bucket_height} (grid ${r.grid_h}x${r.grid_w}), crop ${r.crop_w}x${r.crop_h}, cls [${cls}, …]`);
}
