/**
 * `dinofeat pull` against a fake Hugging Face Hub served from this process: two node:http
 * listeners on 127.0.0.1, the Hub (file list API, resolve URLs, a relative redirect for small
 * files as the Hub's resolve-cache does) and a CDN on another origin that the Hub redirects
 * safetensors to with X-Linked-Size, serving Range requests. Repos are made with the test model.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { createHash } from 'node:crypto';
import type { PullOptions } from '../src/commands/pull.js';
import { downloadCheckpoint } from '../src/store/hub.js';
import { writeSafetensors } from '../src/convert/safetensors.js';
import { TINY_TEST_MODEL, testCheckpointTensors, writeTestCheckpoint } from '../src/convert/test-model.js';
import { TINY_CONVNEXT_TEST_MODEL, writeConvNextTestCheckpoint } from '../src/convert/test-convnext.js';
import { UserError } from '../src/core/errors.js';
import { loadModelInfo } from '../src/model/load-info.js';
import { describeModel, findKnownModel, formatRegistry, KNOWN_MODELS } from '../src/store/registry.js';
import { defaultModelPath, dinofeatHome, modelsDir, pulledModelDir } from '../src/store/layout.js';
import { run, tsxEval, type Completed } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';
import { writeStructured } from './fixtures/images.js';
import { runCli } from './helpers/cli.js';

const COMMIT = 'c0ffee'.padEnd(40, '0');
const TOKEN = 'hf_test_secret';

interface FakeRepo {
  dir: string;
  gated?: boolean;
  /** CDN: the first request for this file gets the full headers, then `after` bytes and a reset. */
  interruptOnce?: { file: string; after: number };
  /** Hub: X-Linked-Size larger than the file by this much (a declared size the CDN does not send). */
  linkedSizeExtra?: number;
  /** CDN: send safetensors chunked (no Content-Length) and stop this many bytes short. */
  truncateChunked?: number;
}

interface Seen {
  origin: 'hub' | 'cdn';
  url: string;
  range?: string;
  authorization?: string;
}

const repos = new Map<string, FakeRepo>();
const seen: Seen[] = [];
let hub: http.Server;
let cdn: http.Server;
let hubUrl: string;
let cdnUrl: string;
let work: string;
let tiny: string;

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

function repoFiles(repo: FakeRepo): string[] {
  return fs.readdirSync(repo.dir).sort();
}

/** Serves a file, honouring `Range: bytes=N-` as the Hub's CDN does. */
function sendFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, repo: FakeRepo, name: string): void {
  const body = fs.readFileSync(file);
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  if (start >= body.length && range) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
    return;
  }
  const part = body.subarray(start);
  const headers: http.OutgoingHttpHeaders = range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {};
  if (repo.truncateChunked !== undefined && name.endsWith('.safetensors')) {
    res.writeHead(200, headers);
    res.end(part.subarray(0, part.length - repo.truncateChunked));
    return;
  }
  res.writeHead(range ? 206 : 200, { ...headers, 'content-length': part.length });
  if (repo.interruptOnce?.file === name) {
    const cut = repo.interruptOnce.after;
    repo.interruptOnce = undefined;
    res.write(part.subarray(0, cut), () => setTimeout(() => res.destroy(), 20));
    return;
  }
  res.end(part);
}

function handle(origin: 'hub' | 'cdn') {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url!, 'http://x');
    seen.push({ origin, url: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
    const notFound = (code: string) => res.writeHead(404, { 'x-error-code': code }).end(`{"error":"${code}"}`);

    let m = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
    if (origin === 'cdn') {
      const repo = m && repos.get(m[1]!);
      if (!m || !repo) return void notFound('EntryNotFound');
      return sendFile(req, res, path.join(repo.dir, m[2]!), repo, m[2]!);
    }

    m = /^\/(?:api\/models\/)?([^/]+\/[^/]+)\/(revision|resolve|resolve-cache)\/([^/]+)(?:\/(.+))?$/.exec(url.pathname);
    const repo = m && repos.get(m[1]!);
    if (!m || !repo) return void res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end();
    const [, id, kind, revision, file] = m;
    if (repo.gated && req.headers.authorization !== `Bearer ${TOKEN}`) {
      return void res.writeHead(401, { 'x-error-code': 'GatedRepo' }).end('{"error":"gated"}');
    }
    if (revision !== 'main' && revision !== COMMIT) return void notFound('RevisionNotFound');
    if (kind === 'revision') {
      // As the Hub with blobs=true: a blob id for every file, LFS size and sha256 for the weights.
      const siblings = repoFiles(repo).map((f) => {
        const bytes = fs.readFileSync(path.join(repo.dir, f));
        const lfs = f.endsWith('.safetensors') ? { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') } : undefined;
        return { rfilename: f, blobId: createHash('sha1').update(bytes).digest('hex'), size: bytes.length, lfs };
      });
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id, sha: COMMIT, siblings }));
    }
    const local = path.join(repo.dir, file!);
    if (!fs.existsSync(local)) return void notFound('EntryNotFound');
    if (kind === 'resolve' && file!.endsWith('.safetensors')) {
      const size = fs.statSync(local).size + (repo.linkedSizeExtra ?? 0);
      return void res.writeHead(302, { location: `${cdnUrl}/cdn/${id}/${file}`, 'x-linked-size': size }).end();
    }
    if (kind === 'resolve') return void res.writeHead(307, { location: `/${id}/resolve-cache/${revision}/${file}` }).end();
    sendFile(req, res, local, repo, file!);
  };
}

/** A repo with a copy of a checkpoint, the tiny test checkpoint unless `from` says otherwise. */
function addRepo(id: string, opts: Omit<FakeRepo, 'dir'> = {}, from = tiny): FakeRepo {
  const dir = path.join(work, 'remote', id.replace('/', '--'));
  fs.cpSync(from, dir, { recursive: true });
  const repo = { dir, ...opts };
  repos.set(id, repo);
  return repo;
}

/** runPull in a child process, as the CLI runs it: exit code and output (UserError as the CLI prints it). */
const PULL_CHILD = `
  const { runPull } = await import('./src/commands/pull.ts');
  const { isUserError } = await import('./src/core/errors.ts');
  const [repo, opts] = JSON.parse(process.argv[1]);
  try {
    process.exitCode = await runPull(repo, opts);
  } catch (e) {
    if (!isUserError(e)) throw e;
    process.stderr.write('dinofeat: ' + e.message + '\\n');
    process.exitCode = e.exitCode;
  }
`;

function pull(repoId: string, opts: PullOptions): Promise<Completed> {
  return run(process.execPath, tsxEval(PULL_CHILD, JSON.stringify([repoId, opts])), { timeoutMs: 20_000 });
}

async function pullOk(repoId: string, opts: PullOptions): Promise<{ stdout: string; stderr: string }> {
  const r = await pull(repoId, opts);
  assert.equal(r.code, 0, r.stderr);
  return r;
}

function assertSameFiles(remote: string, local: string): void {
  // The repo's README is not part of the checkpoint; beside the files is only the download record.
  const names = fs.readdirSync(remote).filter((f) => f !== 'README.md').sort();
  assert.deepEqual(fs.readdirSync(local).filter((f) => f !== '.dinofeat-download.json').sort(), names);
  for (const f of names) assert.ok(fs.readFileSync(path.join(local, f)).equals(fs.readFileSync(path.join(remote, f))), `${f} differs`);
}

async function runModel(modelPath: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const pixels = Float32Array.from({ length: 3 * 32 * 48 }, (_, k) => Math.sin(k / 7));
    const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, 32, 48]) });
    const hidden = out.last_hidden_state!;
    // 1 CLS + 4 registers + 2x3 patches of 16 pixels.
    assert.deepEqual(hidden.dims, [1, 1 + TINY_TEST_MODEL.numRegisters + 6, TINY_TEST_MODEL.hiddenSize]);
    return hidden.data as Float32Array;
  } finally {
    await session.release();
  }
}

before(async () => {
  work = tempDir();
  tiny = path.join(work, 'tiny');
  await writeTestCheckpoint(tiny, TINY_TEST_MODEL);
  hub = http.createServer(handle('hub'));
  cdn = http.createServer(handle('cdn'));
  hubUrl = await listen(hub);
  cdnUrl = await listen(cdn);
  process.env.HF_ENDPOINT = hubUrl;
});

beforeEach(() => {
  process.env.DINOFEAT_HOME = fs.mkdtempSync(path.join(work, 'home-'));
  delete process.env.HF_TOKEN;
  seen.length = 0;
});

after(() => {
  for (const s of [hub, cdn]) {
    s.closeAllConnections();
    s.close();
  }
});

test('pull downloads byte-identical files, converts, and makes the first model the default', { timeout: 30_000 }, async () => {
  const repo = addRepo('acme/tiny');
  const r = await pullOk('acme/tiny', { precision: 'fp32' });
  const dir = pulledModelDir('acme/tiny', 'main');
  assertSameFiles(repo.dir, path.join(dir, 'checkpoint'));
  const modelPath = path.join(dir, 'model-fp32.onnx');
  assert.equal(loadModelInfo(modelPath).sourceRepo, 'acme/tiny');
  await runModel(modelPath);
  assert.match(r.stderr, /acme\/tiny is not in dinofeat's registry/);
  assert.ok(r.stdout.includes(`dinofeat extract ./images --model ${modelPath}`), r.stdout);

  // No default existed: this one became it, as a symlink that loads like the model.
  assert.equal(fs.readlinkSync(defaultModelPath()), modelPath);
  assert.equal(loadModelInfo(defaultModelPath()).sourceRepo, 'acme/tiny');

  // Files came from the listed commit; safetensors through the CDN, small files through the relative redirect.
  const resolves = seen.filter((s) => s.url.includes('/resolve/'));
  assert.ok(resolves.length === 3 && resolves.every((s) => s.url.includes(`/resolve/${COMMIT}/`)), JSON.stringify(resolves));
  assert.deepEqual(seen.filter((s) => s.origin === 'cdn').map((s) => s.url), ['/cdn/acme/tiny/model.safetensors']);

  // Pulling again transfers nothing and keeps the converted model.
  const mtime = fs.statSync(modelPath).mtimeMs;
  seen.length = 0;
  const again = await pullOk('acme/tiny', { precision: 'fp32' });
  assert.match(again.stdout, /already at/);
  assert.deepEqual(seen.map((s) => s.url), ['/api/models/acme/tiny/revision/main']);
  assert.equal(fs.statSync(modelPath).mtimeMs, mtime);

  // The branch moves to new weights of the same size: they are fetched again and reconverted.
  const before = await runModel(modelPath);
  await writeTestCheckpoint(repo.dir, { ...TINY_TEST_MODEL, seed: 99 });
  seen.length = 0;
  assert.match((await pullOk('acme/tiny', { precision: 'fp32' })).stdout, /converted to/);
  assert.deepEqual(seen.filter((s) => s.origin === 'cdn').map((s) => s.url), ['/cdn/acme/tiny/model.safetensors']);
  assertSameFiles(repo.dir, path.join(dir, 'checkpoint'));
  assert.notDeepEqual(await runModel(modelPath), before);
});

test('a second pull leaves the default alone unless --default is given', { timeout: 30_000 }, async () => {
  addRepo('acme/first');
  addRepo('acme/second');
  await pullOk('acme/first', { precision: 'fp32' });
  const first = path.join(pulledModelDir('acme/first', 'main'), 'model-fp32.onnx');
  await pullOk('acme/second', { precision: 'fp16' });
  assert.equal(fs.readlinkSync(defaultModelPath()), first);
  await pullOk('acme/second', { precision: 'fp16', default: true });
  assert.equal(fs.readlinkSync(defaultModelPath()), path.join(pulledModelDir('acme/second', 'main'), 'model-fp16.onnx'));
  assert.deepEqual(fs.readdirSync(path.dirname(defaultModelPath())).filter((f) => f.includes('.tmp')), []);
});

test('pull --norm / --layers converts to its own model file beside the plain one, with the constants and layers in its metadata', { timeout: 30_000 }, async () => {
  addRepo('acme/satellite');
  await pullOk('acme/satellite', { precision: 'fp32', norm: 'sat493m', layers: [1] });
  const dir = pulledModelDir('acme/satellite', 'main');
  const variant = loadModelInfo(path.join(dir, 'model-fp32.sat493m.layers-1.onnx'));
  assert.deepEqual([variant.imageMean, variant.imageStd, variant.layers], [[0.43, 0.411, 0.296], [0.213, 0.156, 0.143], [1]]);
  await pullOk('acme/satellite', { precision: 'fp32' });
  const plain = loadModelInfo(path.join(dir, 'model-fp32.onnx'));
  assert.deepEqual([plain.imageMean, plain.layers], [[0.485, 0.456, 0.406], undefined]);
  await pullOk('acme/satellite', { precision: 'fp32', imageMean: [0.5, 0.5, 0.5] });
  const models = fs.readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort();
  assert.equal(models.length, 3, models.join());
  assert.match(models[0]!, /^model-fp32\.norm-[0-9a-f]{8}\.onnx$/, 'other constants: a file named by their hash');
  assert.deepEqual(models.slice(1), ['model-fp32.onnx', 'model-fp32.sat493m.layers-1.onnx']);
  assert.deepEqual(loadModelInfo(path.join(dir, models[0]!)).imageMean, [0.5, 0.5, 0.5]);
});

test('pull then extract without --model: the cache is made with the pulled model', { timeout: 60_000 }, async () => {
  addRepo('acme/for-extract');
  await pullOk('acme/for-extract', { precision: 'fp32' });
  const modelPath = path.join(pulledModelDir('acme/for-extract', 'main'), 'model-fp32.onnx');
  const images = path.join(work, 'extract-images');
  await writeStructured(path.join(images, 'a.png'), 40, 56, 1);
  const out = path.join(work, 'extract-cache');
  const r = await runCli(['extract', images, '--out', out], { DINOFEAT_MODEL: '' });
  assert.equal(r.code, 0, r.stderr);
  const { model } = JSON.parse(fs.readFileSync(path.join(out, 'cache.json'), 'utf8')) as { model: { sourceRepo?: string; weightsSha256?: string } };
  assert.equal(model.sourceRepo, 'acme/for-extract');
  assert.equal(model.weightsSha256, loadModelInfo(modelPath).weightsSha256);
});

test('a sharded checkpoint (index + shards) converts to the same model as the single file', { timeout: 30_000 }, async () => {
  const dir = path.join(work, 'remote', 'acme--sharded');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(tiny, f), path.join(dir, f));
  const tensors = Object.entries(testCheckpointTensors(TINY_TEST_MODEL));
  const half = Math.ceil(tensors.length / 2);
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  for (const [k, shard] of shards.entries()) {
    const part = tensors.slice(k * half, (k + 1) * half);
    await writeSafetensors(path.join(dir, shard), Object.fromEntries(part.map(([n, t]) => [n, { ...t, dtype: 'F32' as const }])));
    for (const [n] of part) weightMap[n] = shard;
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  repos.set('acme/sharded', { dir });
  addRepo('acme/single');

  await pullOk('acme/sharded', { precision: 'fp32' });
  await pullOk('acme/single', { precision: 'fp32' });
  assertSameFiles(dir, path.join(pulledModelDir('acme/sharded', 'main'), 'checkpoint'));
  const sharded = await runModel(path.join(pulledModelDir('acme/sharded', 'main'), 'model-fp32.onnx'));
  const single = await runModel(path.join(pulledModelDir('acme/single', 'main'), 'model-fp32.onnx'));
  assert.deepEqual(sharded, single);
});

test('a gated repo without HF_TOKEN fails with one line about the licence and HF_TOKEN', { timeout: 10_000 }, async () => {
  addRepo('acme/gated', { gated: true });
  const r = await pull('acme/gated', { precision: 'fp32' });
  assert.equal(r.code, 2);
  assert.ok(r.stderr.endsWith(`dinofeat: acme/gated is gated or private: accept its licence at ${hubUrl}/acme/gated and set HF_TOKEN\n`), r.stderr);
  assert.equal(fs.existsSync(path.join(pulledModelDir('acme/gated', 'main'), 'model-fp32.onnx')), false);
});

test('HF_TOKEN goes as a Bearer token to the Hub, never to the CDN it redirects to', { timeout: 30_000 }, async () => {
  const repo = addRepo('acme/gated-ok', { gated: true });
  process.env.HF_TOKEN = TOKEN;
  await pullOk('acme/gated-ok', { precision: 'fp32' });
  assertSameFiles(repo.dir, path.join(pulledModelDir('acme/gated-ok', 'main'), 'checkpoint'));
  const hubRequests = seen.filter((s) => s.origin === 'hub');
  assert.ok(hubRequests.length >= 5 && hubRequests.every((s) => s.authorization === `Bearer ${TOKEN}`), JSON.stringify(hubRequests));
  const cdnRequests = seen.filter((s) => s.origin === 'cdn');
  assert.ok(cdnRequests.length === 1 && cdnRequests[0]!.authorization === undefined, JSON.stringify(cdnRequests));
});

test('an interrupted download keeps its bytes and the next call resumes it with a Range request', { timeout: 20_000 }, async () => {
  const repo = addRepo('acme/flaky');
  const size = fs.statSync(path.join(repo.dir, 'model.safetensors')).size;
  const cut = Math.floor(size / 3);
  repo.interruptOnce = { file: 'model.safetensors', after: cut };
  const dest = path.join(work, 'flaky-download');

  await assert.rejects(downloadCheckpoint('acme/flaky', { destDir: dest, retries: 0 }), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, new RegExp(`model.safetensors from ${cdnUrl} was interrupted after ${cut} of ${size} bytes: run the same command again to resume`));
    return true;
  });
  assert.equal(fs.statSync(path.join(dest, 'model.safetensors.incomplete')).size, cut);
  assert.equal(fs.existsSync(path.join(dest, 'model.safetensors')), false);

  seen.length = 0;
  await downloadCheckpoint('acme/flaky', { destDir: dest, retries: 0 });
  assertSameFiles(repo.dir, dest);
  // config.json and preprocessor_config.json were complete: only the listing and the resumed file.
  assert.deepEqual(
    seen.filter((s) => s.origin === 'cdn').map((s) => s.range),
    [`bytes=${cut}-`],
  );
  assert.equal(seen.filter((s) => s.url.includes('config.json')).length, 0);
});

test('a partial download of an older version of the file is not continued with the new one', { timeout: 20_000 }, async () => {
  const repo = addRepo('acme/moved');
  repo.interruptOnce = { file: 'model.safetensors', after: 5000 };
  const dest = path.join(work, 'moved-download');
  await assert.rejects(downloadCheckpoint('acme/moved', { destDir: dest, retries: 0 }), /interrupted after 5000 of/);
  // The branch moves on to weights of the same size before the next call.
  await writeTestCheckpoint(repo.dir, { ...TINY_TEST_MODEL, seed: 7 });
  seen.length = 0;
  await downloadCheckpoint('acme/moved', { destDir: dest, retries: 0 });
  assert.deepEqual(seen.filter((s) => s.origin === 'cdn').map((s) => s.range), [undefined]);
  assertSameFiles(repo.dir, dest);
});

test('pull resumes an interrupted transfer by itself within one run', { timeout: 30_000 }, async () => {
  const repo = addRepo('acme/flaky-pull');
  repo.interruptOnce = { file: 'model.safetensors', after: 1000 };
  await pullOk('acme/flaky-pull', { precision: 'fp32' });
  assertSameFiles(repo.dir, path.join(pulledModelDir('acme/flaky-pull', 'main'), 'checkpoint'));
  assert.deepEqual(seen.filter((s) => s.origin === 'cdn').map((s) => s.range), [undefined, 'bytes=1000-']);
});

test('a size that differs from the declared one is an error and leaves no file', { timeout: 10_000 }, async () => {
  // The Hub declares more bytes (X-Linked-Size) than the CDN's Content-Length: caught before the body.
  const declared = addRepo('acme/short-declared', { linkedSizeExtra: 100 });
  const size = fs.statSync(path.join(declared.dir, 'model.safetensors')).size;
  const destA = path.join(work, 'short-declared');
  await assert.rejects(downloadCheckpoint('acme/short-declared', { destDir: destA }), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.message, `sizes of model.safetensors disagree (the file list: ${size} bytes, X-Linked-Size: ${size + 100} bytes, ${cdnUrl}: ${size} bytes); the partial file was removed: run the same command again, or set HF_ENDPOINT to another mirror`);
    return true;
  });
  assert.deepEqual(fs.readdirSync(destA).filter((f) => f.startsWith('model.')), []);

  // A chunked body that ends short of the size in the file list: caught after the body.
  addRepo('acme/short-body', { truncateChunked: 64 });
  const destB = path.join(work, 'short-body');
  await assert.rejects(downloadCheckpoint('acme/short-body', { destDir: destB }), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, new RegExp(`download of model.safetensors from ${cdnUrl} ended at ${size - 64} bytes, expected ${size};`));
    return true;
  });
  assert.deepEqual(fs.readdirSync(destB).filter((f) => f.startsWith('model.')), []);
});

test('unknown repos, revisions and unreachable endpoints give one actionable line', { timeout: 10_000 }, async () => {
  addRepo('acme/tiny-rev');
  const dest = path.join(work, 'errors');
  await assert.rejects(downloadCheckpoint('acme/nope', { destDir: dest }), /acme\/nope was not found on .*set HF_TOKEN if it is private/);
  await assert.rejects(downloadCheckpoint('acme/tiny-rev', { destDir: dest, revision: 'v9' }), /not found in acme\/tiny-rev at revision v9/);
  await assert.rejects(downloadCheckpoint('../etc', { destDir: dest }), /is not a Hugging Face model id/);

  const closed = http.createServer();
  const deadUrl = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  await assert.rejects(downloadCheckpoint('acme/tiny-rev', { destDir: dest, endpoint: deadUrl }), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, new RegExp(`cannot reach ${deadUrl}: ECONNREFUSED.*set HF_ENDPOINT to a mirror`));
    return true;
  });
});

test('the registry lists the DINOv3 (ViT and ConvNeXt) and DINOv2 checkpoints with their licences', () => {
  assert.equal(KNOWN_MODELS.length, 20);
  assert.equal(findKnownModel('Facebook/DINOv3-ViTS16-Pretrain-LVD1689M')?.repoId, 'facebook/dinov3-vits16-pretrain-lvd1689m');
  const v7b = findKnownModel('facebook/dinov3-vit7b16-pretrain-lvd1689m')!;
  assert.deepEqual([v7b.hiddenSize, v7b.layers, v7b.gated, v7b.licence], [4096, 40, true, 'DINOv3 License']);
  const reg = findKnownModel('facebook/dinov2-with-registers-giant')!;
  assert.deepEqual([reg.hiddenSize, reg.patchSize, reg.registers, reg.licence, reg.gated], [1536, 14, 4, 'Apache-2.0', false]);
  const large = findKnownModel('facebook/dinov3-convnext-large-pretrain-lvd1689m')!;
  assert.deepEqual([large.family, large.arch, large.hiddenSize, large.layers, large.patchSize, large.registers, large.gated], ['dinov3-convnext', 'ConvNeXt-L', 1536, 36, 32, 0, true]);
  const table = formatRegistry();
  for (const m of KNOWN_MODELS) assert.ok(table.includes(m.repoId), m.repoId);
  // The satellite checkpoints point at Meta's constants; the others use their processor config's.
  assert.deepEqual(KNOWN_MODELS.filter((m) => m.trainedNorm).map((m) => [m.repoId, m.trainedNorm]), [
    ['facebook/dinov3-vitl16-pretrain-sat493m', 'sat493m'],
    ['facebook/dinov3-vit7b16-pretrain-sat493m', 'sat493m'],
  ]);
  assert.match(describeModel(findKnownModel('facebook/dinov3-vitl16-pretrain-sat493m')!), /\n  trained with the sat493m mean\/std: pass --norm sat493m/);
});

test('pull knows a DINOv3 ConvNeXt: says what it is, converts it with stride 32 as its patch', { timeout: 30_000 }, async () => {
  const id = 'facebook/dinov3-convnext-tiny-pretrain-lvd1689m';
  const checkpoint = path.join(work, 'convnext');
  await writeConvNextTestCheckpoint(checkpoint, TINY_CONVNEXT_TEST_MODEL);
  addRepo(id, { gated: true }, checkpoint);
  process.env.HF_TOKEN = TOKEN;
  const r = await pullOk(id, { precision: 'fp32' });
  assert.match(r.stderr, /: DINOv3 ConvNeXt-T, hidden 768, 18 blocks, stride 32, 28M parameters, DINOv3 License/);
  assert.doesNotMatch(r.stderr, /not in dinofeat's registry/);
  const info = loadModelInfo(path.join(pulledModelDir(id, 'main'), 'model-fp32.onnx'));
  assert.deepEqual([info.family, info.patchSize, info.numRegisters, info.sourceRepo], ['dinov3-convnext', 32, 0, id]);
});

test('pull --layers of a ConvNeXt is refused in one line: a known one before anything is fetched, another when it is converted', { timeout: 30_000 }, async () => {
  const checkpoint = path.join(work, 'convnext-layers');
  await writeConvNextTestCheckpoint(checkpoint, TINY_CONVNEXT_TEST_MODEL);
  const known = 'facebook/dinov3-convnext-small-pretrain-lvd1689m';
  addRepo(known, { gated: true }, checkpoint);
  process.env.HF_TOKEN = TOKEN;
  seen.length = 0;
  const refused = await pull(known, { precision: 'fp32', layers: [2] });
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /^dinofeat: --layers 2: intermediate layers are for ViT checkpoints; a DINOv3 ConvNeXt's stages are not supported, convert it without --layers$/m);
  assert.deepEqual(seen, [], 'nothing fetched for a refused pull');
  assert.equal(fs.existsSync(pulledModelDir(known, 'main')), false);

  addRepo('acme/convnext-layers', {}, checkpoint);
  const late = await pull('acme/convnext-layers', { precision: 'fp32', layers: [1, 2] });
  assert.equal(late.code, 2, late.stderr);
  assert.match(late.stderr, /--layers 1,2: intermediate layers are for ViT checkpoints/);
  assert.deepEqual(fs.readdirSync(pulledModelDir('acme/convnext-layers', 'main')).filter((f) => f.endsWith('.onnx')), [], 'no model file written');
});

test('models live under $DINOFEAT_HOME (default ~/.cache/dinofeat)/models/<owner>--<name>/<revision>', () => {
  assert.equal(dinofeatHome({}), path.join(os.homedir(), '.cache', 'dinofeat'));
  const env = { DINOFEAT_HOME: 'rel/home' };
  assert.equal(modelsDir(env), path.resolve('rel/home', 'models'));
  assert.equal(pulledModelDir('facebook/dinov3-vits16-pretrain-lvd1689m', 'main', env), path.resolve('rel/home', 'models', 'facebook--dinov3-vits16-pretrain-lvd1689m', 'main'));
  assert.equal(defaultModelPath(env), path.resolve('rel/home', 'default.onnx'));
});
