/**
 * Downloads a checkpoint (config.json, preprocessor_config.json, safetensors) from the Hugging Face
 * Hub or a mirror, resumably: each file goes to <file>.incomplete, continues with a Range request
 * after an interruption, is checked against the size the Hub declares and then renamed into place.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RERUN_ADVICE, renameDurable, writeFileAtomic } from '../core/durable-fs.js';
import { UserError } from '../core/errors.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface DownloadProgress {
  file: string;
  received: number;
  /** Unknown until the server says. */
  total: number | undefined;
}

export interface DownloadOptions {
  revision?: string;
  /** Default: $HF_ENDPOINT, then https://huggingface.co. */
  endpoint?: string;
  /** Default: $HF_TOKEN. Sent only to the endpoint's own host, never to the CDN it redirects to. */
  token?: string;
  destDir: string;
  onProgress?: (p: DownloadProgress) => void;
  /** Resumes attempted within this call after an interrupted transfer (default 2). */
  retries?: number;
}

/** "owner/name" (or a legacy bare name): the id ends up in a local path, so nothing else. */
export function assertRepoId(repoId: string): void {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId) || repoId.split('/').some((part) => /^\.+$/.test(part))) {
    throw new UserError(`repo id "${repoId}" is not a Hugging Face model id: use owner/name, e.g. facebook/dinov3-vits16-pretrain-lvd1689m`);
  }
}

/** A branch, tag, commit or refs/pr/N; also part of a local path. */
export function assertRevision(revision: string): void {
  if (!/^[\w.\-/]+$/.test(revision) || revision.split('/').some((part) => part === '' || /^\.+$/.test(part))) {
    throw new UserError(`--revision "${revision}" is not a branch, tag or commit name`);
  }
}

interface Remote {
  repoId: string;
  revision: string;
  endpoint: string;
  token: string | undefined;
}

/** What the file list says about a file, when the server says it. */
interface RemoteFile {
  size?: number;
  /** LFS sha256 or git blob id: changes whenever the content does. */
  id?: string;
}

/** destDir/RECORD_FILE: the RemoteFile each local file (complete or .incomplete) was downloaded as. */
const RECORD_FILE = '.dinofeat-download.json';
type DownloadRecord = Record<string, RemoteFile>;

function readRecord(destDir: string): DownloadRecord {
  try {
    return JSON.parse(fs.readFileSync(path.join(destDir, RECORD_FILE), 'utf8')) as DownloadRecord;
  } catch {
    return {};
  }
}

async function writeRecord(destDir: string, record: DownloadRecord): Promise<void> {
  await writeFileAtomic(path.join(destDir, RECORD_FILE), JSON.stringify(record, null, 1), { advice: RERUN_ADVICE });
}

/** Thrown while a body is streaming: the partial file stays for the next attempt to resume. */
class Interrupted extends Error {}

const encodePath = (file: string) => file.split('/').map(encodeURIComponent).join('/');

function networkError(url: URL, r: Remote, e: unknown): UserError {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (e as Error).message;
  const via = url.origin === new URL(r.endpoint).origin ? '' : ` (redirected there by ${r.endpoint})`;
  return new UserError(`cannot reach ${url.origin}${via}: ${why}; check the network, or set HF_ENDPOINT to a mirror of ${r.endpoint}`);
}

function statusError(res: Response, r: Remote, what: string): UserError {
  const code = res.headers.get('x-error-code');
  const page = `${r.endpoint}/${r.repoId}`;
  // The Hub answers 401 for repos that do not exist too, so as not to reveal private ones.
  if (code === 'RepoNotFound') {
    return new UserError(`${r.repoId} was not found on ${r.endpoint}: check the id (dinofeat models lists known ones)${r.token ? '' : ', or set HF_TOKEN if it is private'}`);
  }
  if (res.status === 401 || res.status === 403) {
    const tokenNote = r.token ? ' (HF_TOKEN is set, but its account has no access yet)' : '';
    return new UserError(`${r.repoId} is gated or private: accept its licence at ${page} and set HF_TOKEN${tokenNote}`);
  }
  if (res.status === 404) {
    return new UserError(`${what} not found in ${r.repoId} at revision ${r.revision} on ${r.endpoint}: check the repo id and --revision`);
  }
  return new UserError(`${r.endpoint} answered ${res.status} ${res.statusText} for ${what} of ${r.repoId}: try again later`);
}

/**
 * GET that follows redirects itself, so the token only goes to the endpoint's host. Returns the
 * final response and the X-Linked-Size the Hub puts on its redirect of LFS files.
 */
async function hubGet(url: URL, r: Remote, headers: Record<string, string>): Promise<{ res: Response; linkedSize: number | undefined }> {
  const endpointOrigin = new URL(r.endpoint).origin;
  let linkedSize: number | undefined;
  for (let hop = 0; hop < 10; hop++) {
    const h = { ...headers };
    if (r.token && url.origin === endpointOrigin) h.authorization = `Bearer ${r.token}`;
    let res: Response;
    try {
      res = await fetch(url, { headers: h, redirect: 'manual' });
    } catch (e) {
      throw networkError(url, r, e);
    }
    const linked = res.headers.get('x-linked-size');
    if (linked !== null) linkedSize = Number(linked);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    return { res, linkedSize };
  }
  throw new UserError(`${url.origin} redirected too many times for ${r.repoId}: try again later or set HF_ENDPOINT to a mirror`);
}

/** Files of the revision, with sizes when the server gives them (the Hub does with blobs=true). */
async function listFiles(r: Remote): Promise<{ files: Map<string, RemoteFile>; commit: string | undefined }> {
  const url = new URL(`${r.endpoint}/api/models/${r.repoId}/revision/${encodeURIComponent(r.revision)}?blobs=true`);
  const { res } = await hubGet(url, r, { accept: 'application/json' });
  if (!res.ok) throw statusError(res, r, 'the file list');
  let body: { sha?: unknown; siblings?: unknown };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new UserError(`${url.href} did not answer with JSON: is HF_ENDPOINT (${r.endpoint}) a Hugging Face Hub mirror?`);
  }
  if (!Array.isArray(body.siblings)) throw new UserError(`${url.href} lists no files (no "siblings"): is HF_ENDPOINT (${r.endpoint}) a Hugging Face Hub mirror?`);
  const files = new Map<string, RemoteFile>();
  for (const s of body.siblings as { rfilename?: unknown; size?: unknown; blobId?: unknown; lfs?: { size?: unknown; sha256?: unknown } }[]) {
    if (typeof s.rfilename !== 'string') continue;
    const size = typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : undefined;
    const id = typeof s.lfs?.sha256 === 'string' ? s.lfs.sha256 : typeof s.blobId === 'string' ? s.blobId : undefined;
    files.set(s.rfilename, { size, id });
  }
  return { files, commit: typeof body.sha === 'string' && /^[0-9a-f]{40}$/.test(body.sha) ? body.sha : undefined };
}

/** A file name from the remote index becomes a local path: keep it inside destDir. */
function localPath(destDir: string, file: string, r: Remote): string {
  const p = path.resolve(destDir, file);
  if (path.isAbsolute(file) || !p.startsWith(path.resolve(destDir) + path.sep)) {
    throw new UserError(`${r.repoId} names a file outside the checkpoint (${file}); refusing to download it`);
  }
  return p;
}

function parseContentRange(value: string | null): { start: number | undefined; total: number | undefined } {
  const m = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!m) return { start: undefined, total: undefined };
  return { start: m[1] === undefined ? undefined : Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

const retryHint = 'the partial file was removed: run the same command again, or set HF_ENDPOINT to another mirror';

/**
 * One attempt: continue <final>.incomplete from where it stopped (or start it), and leave it
 * complete. Throws Interrupted when the body stops early, UserError when it can never be right.
 */
async function transfer(url: URL, file: string, part: string, declared: number | undefined, r: Remote, onProgress?: (p: DownloadProgress) => void): Promise<void> {
  const have = fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0;
  const { res, linkedSize } = await hubGet(url, r, have > 0 ? { range: `bytes=${have}-` } : {});
  const host = new URL(res.url || url.href).origin;
  const contentRange = parseContentRange(res.headers.get('content-range'));

  if (res.status === 416 && have > 0) {
    // Range starts at the end: the previous run got every byte but stopped before the rename.
    await res.body?.cancel();
    if (contentRange.total === have && (declared ?? linkedSize ?? have) === have) return;
    fs.rmSync(part);
    throw new Interrupted(`${file}: the partial download does not fit the remote file`);
  }
  if (!res.ok || !res.body) throw statusError(res, r, file);

  let append = false;
  let total: number | undefined;
  if (res.status === 206) {
    if (contentRange.start !== have) {
      await res.body.cancel();
      fs.rmSync(part);
      throw new Interrupted(`${file}: ${host} resumed at the wrong offset`);
    }
    append = true;
    total = contentRange.total;
  } else {
    const length = res.headers.get('content-length');
    total = length === null ? undefined : Number(length);
  }
  // Every size anyone declared must agree before a byte is kept.
  const claims = ([['the file list', declared], ['X-Linked-Size', linkedSize], [host, total]] as const).filter((c): c is readonly [string, number] => c[1] !== undefined);
  if (claims.some(([, n]) => n !== claims[0]![1])) {
    await res.body.cancel();
    fs.rmSync(part, { force: true });
    throw new UserError(`sizes of ${file} disagree (${claims.map(([who, n]) => `${who}: ${n} bytes`).join(', ')}); ${retryHint}`);
  }
  const want = claims[0]?.[1];

  let received = append ? have : 0;
  const fh = await fs.promises.open(part, append ? 'a' : 'w');
  try {
    onProgress?.({ file, received, total: want });
    try {
      for await (const chunk of res.body) {
        await fh.write(chunk);
        received += chunk.length;
        onProgress?.({ file, received, total: want });
      }
    } catch {
      throw new Interrupted(`download of ${file} from ${host} was interrupted after ${received}${want === undefined ? '' : ` of ${want}`} bytes`);
    }
    // The rename below must never publish a file whose bytes are still in flight.
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (want !== undefined && received !== want) {
    fs.rmSync(part);
    throw new UserError(`download of ${file} from ${host} ended at ${received} bytes, expected ${want}; ${retryHint}`);
  }
}

interface Target {
  r: Remote;
  commit: string;
  destDir: string;
  record: DownloadRecord;
  retries: number;
  onProgress?: (p: DownloadProgress) => void;
}

async function downloadFile(file: string, remote: RemoteFile, t: Target): Promise<string> {
  const { r, destDir } = t;
  const final = localPath(destDir, file, r);
  const existing = fs.statSync(final, { throwIfNoEntry: false });
  const had = t.record[file];
  // Only verified files are ever renamed into place, so a present file is whole; its size and
  // recorded content id tell whether it is still the file the revision has.
  if (existing?.isFile() && (remote.size === undefined || existing.size === remote.size) && (remote.id === undefined || had?.id === undefined || had.id === remote.id)) {
    return final;
  }

  fs.mkdirSync(path.dirname(final), { recursive: true });
  const part = `${final}.incomplete`;
  const partKey = `${file}.incomplete`;
  // Bytes of another version of the file must not be continued with this one's.
  if (t.record[partKey]?.id !== remote.id) fs.rmSync(part, { force: true });
  t.record[partKey] = remote;
  await writeRecord(destDir, t.record);
  const url = new URL(`${r.endpoint}/${r.repoId}/resolve/${encodeURIComponent(t.commit)}/${encodePath(file)}`);
  for (let attempt = 0; ; attempt++) {
    try {
      await transfer(url, file, part, remote.size, r, t.onProgress);
      break;
    } catch (e) {
      if (!(e instanceof Interrupted)) throw e;
      if (attempt >= t.retries) {
        throw new UserError(`${e.message}: run the same command again to ${fs.existsSync(part) ? `resume (${part} keeps what arrived)` : 'retry'}`);
      }
    }
  }
  await renameDurable(part, final, { advice: RERUN_ADVICE });
  delete t.record[partKey];
  t.record[file] = remote;
  await writeRecord(destDir, t.record);
  return final;
}

/** The weight files a checkpoint needs: one model.safetensors or the shards its index names. */
async function weightFiles(files: Map<string, RemoteFile>, fetchFile: (f: string) => Promise<string>, r: Remote): Promise<string[]> {
  if (files.has('model.safetensors')) return ['model.safetensors'];
  if (!files.has('model.safetensors.index.json')) {
    const other = [...files.keys()].find((f) => /\.(bin|pth|pt|onnx)$/.test(f));
    throw new UserError(`${r.repoId} at revision ${r.revision} has no model.safetensors or model.safetensors.index.json${other ? ` (only ${other})` : ''}: dinofeat reads safetensors checkpoints`);
  }
  const index = await fetchFile('model.safetensors.index.json');
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch {
    weightMap = undefined;
  }
  if (typeof weightMap !== 'object' || weightMap === null) {
    fs.rmSync(index);
    throw new UserError(`model.safetensors.index.json of ${r.repoId} has no weight_map: the repo is not a usable checkpoint`);
  }
  return [...new Set(Object.values(weightMap as Record<string, unknown>).map(String))].sort();
}

/** Downloads the checkpoint into destDir (created if needed) and returns destDir. */
export async function downloadCheckpoint(repoId: string, opts: DownloadOptions): Promise<string> {
  assertRepoId(repoId);
  const revision = opts.revision ?? 'main';
  assertRevision(revision);
  const endpoint = (opts.endpoint ?? (process.env.HF_ENDPOINT || DEFAULT_ENDPOINT)).replace(/\/+$/, '');
  try {
    new URL(endpoint);
  } catch {
    throw new UserError(`HF_ENDPOINT "${endpoint}" is not a URL: use e.g. https://huggingface.co or your mirror's address`);
  }
  const r: Remote = { repoId, revision, endpoint, token: opts.token ?? (process.env.HF_TOKEN || undefined) };

  const { files, commit } = await listFiles(r);
  if (!files.has('config.json')) throw new UserError(`${repoId} at revision ${revision} has no config.json: it is not a Hugging Face transformers checkpoint`);
  fs.mkdirSync(opts.destDir, { recursive: true });
  // Files come from the commit the listing named, so a branch that moves meanwhile cannot mix versions.
  const target: Target = { r, commit: commit ?? revision, destDir: opts.destDir, record: readRecord(opts.destDir), retries: opts.retries ?? 2, onProgress: opts.onProgress };
  const fetchFile = (f: string) => downloadFile(f, files.get(f)!, target);

  await fetchFile('config.json');
  if (files.has('preprocessor_config.json')) await fetchFile('preprocessor_config.json');
  for (const f of await weightFiles(files, fetchFile, r)) {
    if (!files.has(f)) throw new UserError(`model.safetensors.index.json of ${repoId} names ${f}, which the repo does not have`);
    await fetchFile(f);
  }
  return opts.destDir;
}
