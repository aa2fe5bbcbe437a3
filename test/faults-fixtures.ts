/**
 * Shared fixtures for test/faults-*.test.ts: the bad-input corpus (built here with sharp and raw
 * bytes), the CLI as a child process that can be killed or run under a shell (ulimit), and plain
 * reads of what a cache holds: the shards through DuckDB, errors.jsonl, the files on disk.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { DuckDBInstance } from '@duckdb/node-api';
import type { ErrorEntry } from '../src/cache/errors-log.js';
import { makeTinyModel, structuredImage, structuredRgb, tempDir, type Completed } from './extract-fixtures.js';

export { makeTinyModel, runCli, tempDir, writeStructured, type Completed } from './extract-fixtures.js';

export const CLI = path.resolve('bin/dinofeat.js');

/** What must become of one corpus entry. */
export type Expectation =
  | { extracted: [width: number, height: number] }
  | { failed: ErrorEntry['stage']; reason: RegExp }
  /** Not a regular file: neither read nor counted. */
  | { skipped: true };

/** One corpus entry: its key (relative path as stored) and what must become of it. */
export interface CorpusCase {
  key: string;
  why: string;
  expect: Expectation;
}

const write = (root: string, name: string | Buffer, bytes: Buffer) => {
  const file = typeof name === 'string' ? path.join(root, name) : Buffer.concat([Buffer.from(`${root}/`), name]);
  fs.mkdirSync(path.dirname(file.toString()), { recursive: true });
  fs.writeFileSync(file, bytes);
};

const jpeg = (w: number, h: number, seed: number) => structuredImage(w, h, seed).jpeg({ quality: 90 }).toBuffer();
const png = (w: number, h: number, seed: number) => structuredImage(w, h, seed).png().toBuffer();

/** Recomputes a PNG chunk's CRC after its bytes were edited (chunk starts at `at`, its length field). */
function fixCrc(bytes: Buffer, at: number): void {
  const length = bytes.readUInt32BE(at);
  bytes.writeUInt32BE(zlib.crc32(bytes.subarray(at + 4, at + 8 + length)), at + 8 + length);
}

/** Offset of the first chunk of `type` in a PNG. */
function chunkAt(bytes: Buffer, type: string): number {
  for (let at = 8; at < bytes.length; at += 12 + bytes.readUInt32BE(at)) {
    if (bytes.toString('latin1', at + 4, at + 8) === type) return at;
  }
  throw new Error(`no ${type} chunk`);
}

/**
 * Pixels stored so that an EXIF orientation `o` shows them as the upright image: for 5-8 the
 * stored image has width and height swapped. Only the sizes matter here; test/image-decode.test.ts
 * checks the pixels.
 */
async function orientedJpeg(width: number, height: number, o: number): Promise<Buffer> {
  const [w, h] = o >= 5 ? [height, width] : [width, height];
  return structuredImage(w, h, o).withMetadata({ orientation: o }).jpeg({ quality: 90 }).toBuffer();
}

/** Three 10x10 frames (red, green, blue) stacked as pages. */
function animated(format: 'gif' | 'webp'): Promise<Buffer> {
  const frames = Buffer.alloc(10 * 30 * 3);
  for (let k = 0; k < 3; k++) for (let p = 0; p < 100; p++) frames[(k * 100 + p) * 3 + k] = 255;
  return sharp(frames, { raw: { width: 10, height: 30, channels: 3, pageHeight: 10 } })[format]().toBuffer();
}

/** The non-UTF-8 file name of the corpus (byte 0xFF) and the key it is stored under. */
export const NON_UTF8_NAME = Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0x31, 0xff, 0x2e, 0x70, 0x6e, 0x67]); // "latin1\xff.png"
export const NON_UTF8_KEY = 'latin1%FF.png';

/**
 * Writes every kind of awkward input under `root` and returns what must become of each. Valid
 * oddities are extracted with their upright size; broken files fail at the stage that sees it.
 */
export async function buildBadCorpus(root: string): Promise<CorpusCase[]> {
  const cases: CorpusCase[] = [];
  const add = (key: string, why: string, expect: Expectation) => cases.push({ key, why, expect });

  write(root, 'plain.jpg', await jpeg(40, 30, 1));
  add('plain.jpg', 'an ordinary JPEG', { extracted: [40, 30] });

  const fullJpeg = await jpeg(64, 48, 2);
  write(root, 'truncated.jpg', fullJpeg.subarray(0, Math.floor(fullJpeg.length * 0.6)));
  add('truncated.jpg', 'a JPEG cut at 60%', { failed: 'decode', reason: /^VipsJpeg: premature end of JPEG image/ });

  const fullPng = await png(64, 48, 3);
  write(root, 'truncated.png', fullPng.subarray(0, Math.floor(fullPng.length * 0.6)));
  add('truncated.png', 'a PNG cut at 60%', { failed: 'decode', reason: /libpng read error \(not enough data\)/ });

  write(root, 'empty.jpg', Buffer.alloc(0));
  add('empty.jpg', 'a zero-byte file', { failed: 'read', reason: /empty file/ });

  write(root, 'text.jpg', Buffer.from('this is a text file, not a picture\n'));
  add('text.jpg', 'text named .jpg', { failed: 'decode', reason: /not a readable image/ });

  // sharp (like PIL) reads by content, not by name: the file is a fine image.
  write(root, 'png-bytes.jpg', await png(36, 52, 4));
  add('png-bytes.jpg', 'PNG bytes named .jpg', { extracted: [36, 52] });

  // The CRC of the image data chunk no longer matches: the file is corrupt (PIL refuses it too).
  const badCrc = Buffer.from(await png(40, 40, 5));
  const idat = chunkAt(badCrc, 'IDAT');
  badCrc.writeUInt32BE(badCrc.readUInt32BE(idat + 8 + badCrc.readUInt32BE(idat)) ^ 0xdeadbeef, idat + 8 + badCrc.readUInt32BE(idat));
  write(root, 'bad-crc.png', badCrc);
  add('bad-crc.png', 'a PNG whose IDAT CRC is wrong', { failed: 'decode', reason: /libpng read error \(IDAT: CRC error\)/ });

  // A decompression bomb: a valid IHDR declaring 100000x100000 (10 gigapixels) over 40x30 of data.
  const bomb = Buffer.from(await png(40, 30, 6));
  bomb.writeUInt32BE(100_000, 16);
  bomb.writeUInt32BE(100_000, 20);
  fixCrc(bomb, 8);
  write(root, 'bomb.png', bomb);
  add('bomb.png', 'declared 100000x100000', { failed: 'decode', reason: /100000x100000 = 10000000000 pixels is over the limit of 100000000 \(--max-pixels\); not decoded/ });

  // 24 megapixels: big, but under the default limit.
  write(root, 'huge.jpg', await sharp({ create: { width: 6000, height: 4000, channels: 3, background: '#4080c0' } }).jpeg().toBuffer());
  add('huge.jpg', 'a 6000x4000 photo', { extracted: [6000, 4000] });

  write(root, 'one-pixel.png', await sharp({ create: { width: 1, height: 1, channels: 3, background: '#102030' } }).png().toBuffer());
  add('one-pixel.png', 'a 1x1 image', { extracted: [1, 1] });

  const rgb = structuredRgb(30, 20, 7);
  write(root, 'sixteen-bit.png', await sharp(Uint16Array.from(rgb, (v) => v * 257), { raw: { width: 30, height: 20, channels: 3 } }).toColourspace('rgb16').png().toBuffer());
  add('sixteen-bit.png', 'a 16-bit RGB PNG', { extracted: [30, 20] });

  write(root, 'cmyk.jpg', await structuredImage(44, 33, 8).toColourspace('cmyk').jpeg().toBuffer());
  add('cmyk.jpg', 'a CMYK JPEG', { extracted: [44, 33] });

  write(root, 'palette.png', await structuredImage(50, 25, 9).png({ palette: true, colours: 16 }).toBuffer());
  add('palette.png', 'a palette PNG', { extracted: [50, 25] });

  write(root, 'alpha.png', await structuredImage(32, 48, 10).ensureAlpha(0.5).png().toBuffer());
  add('alpha.png', 'an RGBA PNG', { extracted: [32, 48] });

  write(root, 'alpha.webp', await structuredImage(48, 32, 11).ensureAlpha(0.25).webp({ lossless: true }).toBuffer());
  add('alpha.webp', 'a WebP with alpha', { extracted: [48, 32] });

  write(root, 'grey.jpg', await structuredImage(27, 41, 12).greyscale().jpeg().toBuffer());
  add('grey.jpg', 'a greyscale JPEG', { extracted: [27, 41] });

  write(root, 'anim.gif', await animated('gif'));
  add('anim.gif', 'an animated GIF (first frame)', { extracted: [10, 10] });
  write(root, 'anim.webp', await animated('webp'));
  add('anim.webp', 'an animated WebP (first frame)', { extracted: [10, 10] });

  // Upright 48x32 under every EXIF orientation: 5-8 are stored 32x48.
  for (let o = 1; o <= 8; o++) {
    write(root, `exif/orientation-${o}.jpg`, await orientedJpeg(48, 32, o));
    add(`exif/orientation-${o}.jpg`, `EXIF orientation ${o}`, { extracted: [48, 32] });
  }

  fs.mkdirSync(path.join(root, 'loop'), { recursive: true });
  write(root, 'loop/inside.png', await png(20, 20, 13));
  add('loop/inside.png', 'an image beside a symlink loop', { extracted: [20, 20] });
  fs.symlinkSync('..', path.join(root, 'loop', 'back'));
  add('loop/back', 'a symlink back to its parent', { failed: 'source', reason: /symlink loop/ });

  fs.symlinkSync('no-such-file.jpg', path.join(root, 'dangling.jpg'));
  add('dangling.jpg', 'a dangling symlink', { failed: 'source', reason: /dangling symlink/ });

  write(root, NON_UTF8_NAME, await png(22, 33, 14));
  add(NON_UTF8_KEY, 'a file name that is not UTF-8', { extracted: [22, 33] });

  write(root, 'new\nline.png', await png(33, 22, 15));
  add('new\nline.png', 'a file name with a newline', { extracted: [33, 22] });

  write(root, 'UPPER.JPG', await jpeg(26, 26, 16));
  add('UPPER.JPG', 'an upper-case extension', { extracted: [26, 26] });
  write(root, 'Mixed.PnG', await png(25, 35, 17));
  add('Mixed.PnG', 'a mixed-case extension', { extracted: [25, 35] });

  // Far over what a buffer can hold: refused from its size, without reading it (sparse: no disk used).
  fs.writeFileSync(path.join(root, 'sparse-3gb.jpg'), '');
  fs.truncateSync(path.join(root, 'sparse-3gb.jpg'), 3 * 2 ** 30);
  add('sparse-3gb.jpg', 'a 3 GiB file', { failed: 'read', reason: /^File size \(3221225472\) is greater than 2 GiB$/ });

  // Reading a FIFO would block the run for ever; it is not a regular file, so it is not an image.
  execFileSync('mkfifo', [path.join(root, 'fifo.jpg')]);
  add('fifo.jpg', 'a FIFO named .jpg', { skipped: true });

  // A directory named like an image is walked into, not read as a file.
  write(root, 'folder.jpg/inner.png', await png(35, 25, 18));
  add('folder.jpg/inner.png', 'an image inside a directory named folder.jpg', { extracted: [35, 25] });

  return cases;
}

export interface StoredRow {
  key: string;
  width: number;
  height: number;
}

/** Every row of every shards/*.parquet, as a plain DuckDB read sees them (no manifest involved). */
export async function readShardRows(out: string): Promise<StoredRow[]> {
  const shards = path.join(out, 'shards');
  if (!fs.existsSync(shards) || !fs.readdirSync(shards).some((n) => n.endsWith('.parquet'))) return [];
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const reader = await db.runAndReadAll(`SELECT key, width, height FROM read_parquet('${shards}/*.parquet') ORDER BY key`);
  return reader.getRowObjects().map((r) => ({ key: String(r.key), width: Number(r.width), height: Number(r.height) }));
}

/** errors.jsonl as written at the end of a run. */
export function readErrorsFile(out: string): ErrorEntry[] {
  const file = path.join(out, 'errors.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ErrorEntry);
}

/** Every file under `dir` with its size and modification time (to prove a directory unchanged). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) visit(p);
      else {
        const st = fs.statSync(p);
        out[path.relative(dir, p)] = `${st.size}@${st.mtimeMs}`;
      }
    }
  };
  if (fs.existsSync(dir)) visit(dir);
  return out;
}

/** The summary line's counts: "N extracted, N already cached, N failed of N images". */
export function summaryCounts(stdout: string): { extracted: number; skipped: number; failed: number; found: number } {
  const m = /(\d+) extracted, (\d+) already cached, (\d+) failed[^\n]* of (\d+) images/.exec(stdout);
  assert.ok(m, `no summary line in:\n${stdout}`);
  return { extracted: Number(m[1]), skipped: Number(m[2]), failed: Number(m[3]), found: Number(m[4]) };
}

export interface Started {
  child: ChildProcess;
  done: Promise<Completed & { signal: NodeJS.Signals | null }>;
}

/** Starts `command args` with stdout/stderr collected; `done` resolves when it exits (also by signal). */
export function start(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Started {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Completed & { signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr }));
  });
  return { child, done };
}

/** `dinofeat <args>` in a child process that the caller may signal. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Started {
  assert.ok(fs.existsSync(path.resolve('dist/cli.js')), 'dist/cli.js is missing: run npm run build first (npm test does)');
  return start(process.execPath, [CLI, ...args], env);
}

/** Deterministic pseudo-random numbers in [0, 1), for reproducible kill times. */
export { seededRandom } from '../src/convert/test-model.js';

/** Writes `count` small structured JPEGs (img-000.jpg ..., numbered from `first`) and returns their keys. */
export async function writeManyImages(dir: string, count: number, first = 0, size = 48): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const keys: string[] = [];
  for (let i = first; i < first + count; i++) {
    const key = `img-${String(i).padStart(3, '0')}.jpg`;
    await structuredImage(size + (i % 5), size, i).jpeg({ quality: 85 }).toFile(path.join(dir, key));
    keys.push(key);
  }
  return keys;
}

export interface Workspace {
  dir: string;
  /** The tiny test model's ONNX file. */
  model: string;
  images: string;
  keys: string[];
}

/** A temp dir with the tiny model and `count` images: the setup shared by the fault tests. */
export async function makeWorkspace(count: number): Promise<Workspace> {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  return { dir, model: (await makeTinyModel(dir)).onnx, images, keys: await writeManyImages(images, count) };
}
