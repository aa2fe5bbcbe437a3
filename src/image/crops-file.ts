/**
 * `--crops FILE`: the trainer's bucket and crop box per image, so patch (i, j) covers the pixels
 * of the trainer's latent (i, j) whatever rule the trainer used. The file is dinofeat's JSON Lines
 * (crops-jsonl.ts), kohya's metadata JSON (crops-kohya.ts) or SimpleTuner's bucket metadata
 * (crops-simpletuner.ts), told apart by content; a folder is read as kohya's latent caches
 * (crops-kohya.ts, npz.ts). Everything that can be checked without the images
 * is checked here, before the run (every line readable, every bucket on the patch grid at the DINO
 * scale); what needs the image's size (the crop inside the upright image) is checked per image, and
 * an image that fails it, or that the file lacks, is an error row, or with --crops-fallback goes to
 * dinofeat's own rule.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { UserError } from '../core/errors.js';
import { checkAligned, dinoBucket, type Bucket, type ImagePlan, type Size } from './buckets.js';
import { EntryIndex, type CropsEntry } from './crops-entry.js';
import { parseCropLines } from './crops-jsonl.js';
import { isKohyaMetadata, kohyaEntries, kohyaLatentEntries } from './crops-kohya.js';
import { isSimpleTunerMetadata, simpleTunerEntries } from './crops-simpletuner.js';

export const CROPS_FORMATS = ['jsonl', 'kohya', 'kohya-latents', 'simpletuner'] as const;
export type CropsFormat = (typeof CROPS_FORMATS)[number];

/** What decides the plans, as the preprocessing record keeps it (the file's bytes by their sha256). */
export interface CropsSource {
  format: CropsFormat;
  sha256: string;
  /** Images the file lacks go to dinofeat's rule. */
  fallback: boolean;
  /** The file's buckets as DINO inputs, each with the trainer bucket it came from. */
  buckets: Bucket[];
}

export interface CropsOptions {
  patch: number;
  dinoScale: number;
  fallback: boolean;
}

export class CropsFile {
  private constructor(
    private readonly file: string,
    private readonly index: EntryIndex,
    /** Trainer bucket "WxH" → DINO input. */
    private readonly dino: ReadonlyMap<string, Bucket>,
    readonly source: CropsSource,
    /** Images the file asks to be mirrored (`"flip": true`). */
    readonly flipped: number,
  ) {}

  static async read(file: string, o: CropsOptions): Promise<CropsFile> {
    const isDir = (await fs.stat(file).catch(() => undefined))?.isDirectory();
    const bytes = isDir ? undefined : await fs.readFile(file).catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`--crops ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    const latents = isDir ? await kohyaLatentEntries(file) : undefined;
    const { format, entries } = latents ? { format: 'kohya-latents' as const, entries: latents.entries } : parseCrops(bytes!.toString('utf8'), `--crops ${file}`);
    if (entries.size === 0) throw new UserError(`--crops ${file} has no images in it: ${EMPTY_ADVICE[format]}`);
    const dino = new Map<string, Bucket>();
    for (const [key, e] of entries) {
      if (e.problem) continue;
      const text = `${e.bucket.width}x${e.bucket.height}`;
      if (dino.has(text)) continue;
      if (o.dinoScale === 1) checkAligned(e.bucket, o.patch, `--crops ${file}: the bucket of ${key},`);
      dino.set(text, dinoBucket(e.bucket, o.dinoScale, o.patch));
    }
    const sha256 = createHash('sha256').update(bytes ?? latents!.summary).digest('hex');
    const index = new EntryIndex(entries, format === 'jsonl' ? 'exact' : format === 'kohya-latents' ? 'no-extension' : 'path-or-stem');
    const flipped = [...entries.values()].filter((e) => e.flip).length;
    return new CropsFile(file, index, dino, { format, sha256, fallback: o.fallback, buckets: [...dino.values()] }, flipped);
  }

  /** The image's plan from the file; undefined sends it to dinofeat's rule (--crops-fallback). */
  plan(key: string, size: Size): ImagePlan | { problem: string } | undefined {
    const entry = this.index.find(key);
    if (!entry) {
      return this.source.fallback ? undefined : { problem: `--crops ${this.file} has no entry for this image: add one, or pass --crops-fallback to bucket images it lacks by dinofeat's rule` };
    }
    if (!('crop' in entry)) return entry;
    if (entry.problem !== undefined) return { problem: entry.problem };
    const crop = entry.crop(size);
    if ('problem' in crop) return crop;
    if (crop.x + crop.w > size.width || crop.y + crop.h > size.height) {
      return { problem: `crop box ${crop.w}x${crop.h}+${crop.x}+${crop.y} from --crops ${this.file} is not inside the ${size.width}x${size.height} upright image` };
    }
    const bucket = this.dino.get(`${entry.bucket.width}x${entry.bucket.height}`)!;
    return { bucket, crop, ...(entry.flip ? { flip: true } : {}) };
  }
}

const EMPTY_ADVICE: Record<CropsFormat, string> = {
  jsonl: 'write one entry per image',
  kohya: 'run prepare_buckets_latents.py first, it writes train_resolution',
  'kohya-latents': 'a folder holds kohya latent caches (*_sdxl.npz, *_sd.npz beside the images, from --cache_latents_to_disk): cache them first, or pass a crops file',
  simpletuner: 'let SimpleTuner scan the dataset first',
};

/** The entries of a crops file's text, in whichever format it is. */
function parseCrops(text: string, where: string): { format: CropsFormat; entries: Map<string, CropsEntry> } {
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch {
    whole = undefined; // JSON Lines (more than one line) is not one JSON value
  }
  const trainer = isSimpleTunerMetadata(whole) ? { format: 'simpletuner' as const, read: simpleTunerEntries(whole) }
    : isKohyaMetadata(whole) ? { format: 'kohya' as const, read: kohyaEntries(whole) } : undefined;
  if (trainer) {
    if ('problem' in trainer.read) throw new UserError(`${where} (${trainer.format} metadata): ${trainer.read.problem}`);
    return { format: trainer.format, entries: trainer.read.entries };
  }
  if (whole && typeof whole === 'object' && !('key' in whole)) {
    throw new UserError(`${where} is JSON but not a crops file: give dinofeat's JSON Lines (dinofeat crops writes them), kohya's metadata JSON with train_resolution (prepare_buckets_latents.py), or SimpleTuner's aspect_ratio_bucket_metadata JSON`);
  }
  const lines = parseCropLines(text, where);
  const entries = new Map<string, CropsEntry>();
  for (const [key, l] of lines) entries.set(key, { bucket: l.bucket, crop: () => l.crop, ...(l.flip ? { flip: true } : {}) });
  return { format: 'jsonl', entries };
}
