/**
 * Model and flag errors are found before anything is written: a missing, corrupt or truncated
 * ONNX file, models that break the contract (wrong output name, wrong token count), a bucket off
 * the patch grid, batch size 0, --out that is a file or lies under one. Each gives one line on
 * stderr and exit 2, and leaves --out as it was: not created when it did not exist, untouched
 * when it holds a cache.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DataType, GraphBuilder, encodeModel, i } from '../src/onnx/builder.js';
import { infoToMetadata } from '../src/model/info.js';
import { seededRandom } from '../src/convert/test-model.js';
import { snapshot } from './fixtures/cache-reads.js';
import { fakeModelInfo, writeFakeVit } from './fixtures/fake-vit.js';
import { writeStructured } from './fixtures/images.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

let dir: string;
let model: string;
let images: string;
let cache: string;

before(async () => {
  dir = tempDir();
  model = (await makeTinyModel(dir)).onnx;
  images = path.join(dir, 'images');
  for (let i = 0; i < 3; i++) await writeStructured(path.join(images, `img${i}.png`), 40 + i, 36, i);
  cache = path.join(dir, 'cache');
  const made = await runCli(['extract', images, '--model', model, '--out', cache, '--bucket', '64x64', '--quiet']);
  assert.equal(made.code, 0, made.stderr);
});

/** A model with input pixel_values whose output is not called last_hidden_state. */
function wrongOutputName(file: string): string {
  const g = new GraphBuilder('wrong-output');
  const x = g.input('pixel_values', DataType.FLOAT, ['batch', 3, 'height', 'width']);
  g.rename(g.op('ReduceMean', [x, g.constInt64([2, 3])], { keepdims: i(0) }), 'features');
  g.output('features', DataType.FLOAT, ['batch', 3]);
  fs.writeFileSync(file, encodeModel(g, { opsets: { '': 18 }, metadata: infoToMetadata(fakeModelInfo({ patchSize: 16, hidden: 3, registers: 0 })) }));
  return file;
}

/** A ViT-shaped model without register tokens whose metadata claims 4: one token per patch plus CLS, 4 short. */
function wrongTokenCount(file: string): string {
  return writeFakeVit(file, { patchSize: 16, hidden: 8, registers: 0, metadata: infoToMetadata(fakeModelInfo({ patchSize: 16, hidden: 8, registers: 4 })) });
}

function randomBytes(file: string, n: number): string {
  const random = seededRandom(7);
  fs.writeFileSync(file, Uint8Array.from({ length: n }, () => Math.floor(random() * 256)));
  return file;
}

interface Case {
  name: string;
  /** Flags after `extract <images>`; `OUT` is replaced by the --out under test. */
  args: () => string[];
  error: RegExp;
  /** --out given by the case itself (a file, a path under a file): only that is checked. */
  fixedOut?: boolean;
}

const CASES: Case[] = [
  { name: 'a missing ONNX file', args: () => ['--model', path.join(dir, 'no-such.onnx'), '--out', 'OUT'], error: /^model .*no-such\.onnx not found: pass an \.onnx file or a Hugging Face checkpoint directory$/ },
  { name: 'an ONNX file of random bytes', args: () => ['--model', randomBytes(path.join(dir, 'random.onnx'), 100_000), '--out', 'OUT'], error: /random\.onnx is not an ONNX model \(cannot parse it\); convert a checkpoint with dinofeat convert$/ },
  {
    name: 'a truncated ONNX file',
    args: () => {
      const cut = path.join(dir, 'truncated.onnx');
      fs.writeFileSync(cut, fs.readFileSync(model).subarray(0, 200_000));
      return ['--model', cut, '--out', 'OUT'];
    },
    error: /truncated\.onnx is not an ONNX model \(cannot parse it\)/,
  },
  { name: 'a model whose output is not last_hidden_state', args: () => ['--model', wrongOutputName(path.join(dir, 'wrong-output.onnx')), '--out', 'OUT'], error: /wrong-output\.onnx does not follow the contract: inputs \[pixel_values\], outputs \[features\]; expected input pixel_values and output last_hidden_state/ },
  { name: 'a model with the wrong token count', args: () => ['--model', wrongTokenCount(path.join(dir, 'wrong-tokens.onnx')), '--out', 'OUT'], error: /wrong-tokens\.onnx does not follow the contract: on a 48x32 input, last_hidden_state is \[2, 7, 8\], expected \[2, 11, hidden\] = 1 CLS \+ 4 registers \+ 2x3 patches of 16px; the metadata does not describe this model/ },
  { name: 'a bucket off the patch grid', args: () => ['--model', model, '--bucket', '100x100', '--out', 'OUT'], error: /^--bucket 100x100 is not a multiple of the model's patch size 16: use 96x96 or 96x112 or 112x96 or 112x112$/ },
  { name: 'batch size 0', args: () => ['--model', model, '--batch-size', '0', '--out', 'OUT'], error: /--batch-size must be a whole number of at least 1 \(got 0\)$/ },
  {
    name: '--out is a file',
    fixedOut: true,
    args: () => {
      fs.writeFileSync(path.join(dir, 'a-file'), 'keep me');
      return ['--model', model, '--out', path.join(dir, 'a-file')];
    },
    error: /^--out .*a-file is a file: pass a directory for the cache$/,
  },
  { name: '--out under a file', fixedOut: true, args: () => ['--model', model, '--out', path.join(dir, 'a-file', 'cache')], error: /^cannot create --out .*a-file\/cache: .*a-file is a file, not a directory$/ },
];

/** One line naming the problem; commander adds its "(run with --help for usage)" hint to parse errors. */
function assertOneLine(stderr: string, error: RegExp, what: string): void {
  const lines = stderr.split('\n').filter((l) => l && l !== '(run with --help for usage)');
  assert.equal(lines.length, 1, `${what}: one line on stderr, got:\n${stderr}`);
  assert.match(lines[0]!, /^dinofeat: /, what);
  assert.match(lines[0]!.slice('dinofeat: '.length), error, what);
}

test('model and flag errors: one line, exit 2, nothing written to --out', async () => {
  const cacheBefore = snapshot(cache);
  for (const c of CASES) {
    const args = c.args();
    const outs = c.fixedOut ? [args[args.indexOf('--out') + 1]!] : [path.join(dir, `fresh-${CASES.indexOf(c)}`), cache];
    const runs = await Promise.all(outs.map((out) => runCli(['extract', images, ...args.map((a) => (a === 'OUT' ? out : a))])));
    for (const [k, r] of runs.entries()) {
      const what = `${c.name} (--out ${outs[k]})`;
      assert.equal(r.code, 2, `${what}: exit 2\n${r.stderr}`);
      assertOneLine(r.stderr, c.error, what);
      assert.equal(r.stdout, '', `${what}: nothing on stdout`);
    }
    if (!c.fixedOut) {
      assert.equal(fs.existsSync(outs[0]!), false, `${c.name}: a new --out is not created`);
      assert.deepEqual(snapshot(cache), cacheBefore, `${c.name}: an existing cache is untouched`);
    }
  }
  assert.equal(fs.readFileSync(path.join(dir, 'a-file'), 'utf8'), 'keep me');
  assert.equal(fs.existsSync(path.join(dir, 'a-file.tmp')), false);
});
