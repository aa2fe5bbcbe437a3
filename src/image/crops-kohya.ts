/**
 * kohya sd-scripts' metadata JSON, as finetune/prepare_buckets_latents.py writes it: one object
 * keyed by image (the file name without extension, or the path as globbed with --full_path), each
 * holding `train_resolution: [width, height]`, the bucket (floored to 8) the image's latent was
 * encoded at, beside its caption and tags.
 *
 * The crop is not recorded: kohya resizes the image to cover the bucket (scale by the side that
 * fits, sides rounded half up) and trims the overflow from both ends, centred
 * (train_util.trim_and_resize_if_required without random_crop). `kohyaCrop` is that rule in source
 * pixels, each edge rounded to the nearest pixel (off by at most half a source pixel, the box
 * kohya encodes being fractional in source pixels). Its latent caches (.npz beside the images)
 * hold the latents (their size is the bucket), `original_size` and `crop_ltrb`; that `crop_ltrb`
 * is not this box but SDXL's crop conditioning, the offset of the image fitted *inside* the bucket
 * (BucketManager.get_crop_ltrb), so it is not read: kohyaLatentEntries takes the bucket from the
 * latents and the same rule for the crop. What dinofeat assumes: no
 * --random_crop (its crop is drawn per epoch and recorded nowhere), no --bucket_no_upscale (the
 * image is then trimmed without being resized first), and upright images (kohya does not apply
 * the EXIF orientation; dinofeat does).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CropBox, Size } from './buckets.js';
import type { CropsEntry } from './crops-entry.js';
import { readNpz, type NpyArray } from './npz.js';

/** kohya's centred cover crop of a `size` image for `bucket`, in source pixels. */
export function kohyaCrop(size: Size, bucket: Size): CropBox {
  const { width: W, height: H } = size;
  // BucketManager.select_bucket: the scale that makes one side match, the other overflow.
  const scale = W / H > bucket.width / bucket.height ? bucket.height / H : bucket.width / W;
  const resizedW = Math.floor(W * scale + 0.5);
  const resizedH = Math.floor(H * scale + 0.5);
  // trim_and_resize_if_required: the centred bucket-sized window of the resized image.
  const left = resizedW > bucket.width ? Math.floor((resizedW - bucket.width) / 2) : 0;
  const top = resizedH > bucket.height ? Math.floor((resizedH - bucket.height) / 2) : 0;
  const edge = (resized: number, source: number, at: number) => Math.min(source, Math.max(0, Math.round((at * source) / resized)));
  const x0 = edge(resizedW, W, left);
  const x1 = edge(resizedW, W, left + Math.min(bucket.width, resizedW));
  const y0 = edge(resizedH, H, top);
  const y1 = edge(resizedH, H, top + Math.min(bucket.height, resizedH));
  return { x: x0, y: y0, w: Math.max(1, x1 - x0), h: Math.max(1, y1 - y0) };
}

const isPair = (v: unknown): v is [number, number] => Array.isArray(v) && v.length === 2 && v.every((n) => Number.isInteger(n) && n >= 1);

/** Whether `json` is kohya's metadata: an object of objects, some with a train_resolution. */
export function isKohyaMetadata(json: unknown): json is Record<string, unknown> {
  if (!json || typeof json !== 'object' || Array.isArray(json)) return false;
  return Object.values(json).some((v) => !!v && typeof v === 'object' && 'train_resolution' in v);
}

/**
 * The entries of kohya's metadata: images without a train_resolution (captioned, never bucketed)
 * have none. A malformed train_resolution is a problem naming the key.
 */
export function kohyaEntries(json: Record<string, unknown>): { entries: Map<string, CropsEntry> } | { problem: string } {
  const entries = new Map<string, CropsEntry>();
  for (const [key, v] of Object.entries(json)) {
    const reso = (v as { train_resolution?: unknown } | null)?.train_resolution;
    if (reso === undefined) continue;
    if (!isPair(reso)) return { problem: `${key}: train_resolution ${JSON.stringify(reso)} is not [width, height]` };
    const bucket = { width: reso[0], height: reso[1] };
    entries.set(key, { bucket, crop: (size) => kohyaCrop(size, bucket) });
  }
  return { entries };
}

/** kohya's latent cache names: `<image stem>_<W>x<H>_sdxl.npz` (or `_sd.npz`), or `<image stem>.npz` from older versions. */
const LATENT_CACHE = /(?:_\d+x\d+_(?:sd|sdxl))?\.npz$/;

/** The latents member: `latents`, or the one `latents_<h>x<w>` of a multi-resolution cache. */
function latentsOf(arrays: Map<string, NpyArray>): NpyArray | { problem: string } {
  const plain = arrays.get('latents');
  if (plain) return plain;
  const sized = [...arrays.keys()].filter((k) => /^latents_\d+x\d+$/.test(k));
  if (sized.length === 1) return arrays.get(sized[0]!)!;
  return { problem: sized.length ? `holds latents at ${sized.length} resolutions (${sized.join(', ')}): pass kohya's metadata JSON instead` : 'holds no latents array' };
}

/**
 * The entries of a folder of kohya latent caches (train_network.py / sdxl_train.py with
 * --cache_latents_to_disk, beside the images), keyed by the image's path without extension. The
 * bucket is the latents' size times the VAE's stride 8; `original_size` must be the image's upright
 * size (kohya records the size it loaded, without the EXIF orientation: such an image is an error
 * row, its latents being of the unrotated pixels). The crop is kohyaCrop.
 */
export async function kohyaLatentEntries(dir: string): Promise<{ entries: Map<string, CropsEntry>; summary: string }> {
  const names = (await fs.readdir(dir, { recursive: true })).map((n) => n.split(path.sep).join('/')).filter((n) => LATENT_CACHE.test(n)).sort();
  const entries = new Map<string, CropsEntry>();
  // What decides the plans, one line per cache: the record's sha256 is of this, not of gigabytes of latents.
  const summary: string[] = [];
  for (const name of names) {
    let arrays: Map<string, NpyArray>;
    try {
      arrays = await readNpz(path.join(dir, name), (member) => member.startsWith('original_size'));
    } catch (e) {
      const problem = `kohya latent cache ${name} cannot be read: ${(e as Error).message}`;
      entries.set(name.replace(LATENT_CACHE, ''), { bucket: { width: 0, height: 0 }, crop: () => ({ problem }), problem });
      summary.push(`${name} unreadable`);
      continue;
    }
    const latents = latentsOf(arrays);
    const original = arrays.get('original_size') ?? [...arrays].find(([k]) => k.startsWith('original_size_'))?.[1];
    const [h, w] = 'shape' in latents ? latents.shape.slice(-2) : [];
    const size = original?.values?.length === 2 ? { width: original.values[0]!, height: original.values[1]! } : undefined;
    const problem = 'problem' in latents ? latents.problem : !size || !w || !h ? 'has no original_size [width, height] or latents shape' : undefined;
    const bucket = { width: (w ?? 0) * 8, height: (h ?? 0) * 8 };
    summary.push(`${name} ${bucket.width}x${bucket.height} ${size ? `${size.width}x${size.height}` : '-'}`);
    entries.set(name.replace(LATENT_CACHE, ''), {
      bucket,
      ...(problem ? { problem: `kohya latent cache ${name} ${problem}` } : {}),
      crop: (upright) => {
        if (upright.width !== size!.width || upright.height !== size!.height) {
          const turned = upright.width === size!.height && upright.height === size!.width;
          return { problem: `kohya latent cache ${name} records original_size ${size!.width}x${size!.height}, the upright image is ${upright.width}x${upright.height}: ${turned ? 'kohya encoded it without its EXIF rotation, so its latents are of the unrotated pixels' : 'the file changed since it was encoded'}` };
        }
        return kohyaCrop(upright, bucket);
      },
    });
  }
  return { entries, summary: summary.join('\n') };
}
