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
 * kohya encodes being fractional in source pixels). The `crop_ltrb` its SDXL latent caches (.npz)
 * store is not this box: it is SDXL's crop conditioning, the offset of the image fitted *inside*
 * the bucket (BucketManager.get_crop_ltrb), and `original_size` is the image size dinofeat reads
 * from the file itself, so the metadata JSON is all that is needed. What dinofeat assumes: no
 * --random_crop (its crop is drawn per epoch and recorded nowhere), no --bucket_no_upscale (the
 * image is then trimmed without being resized first), and upright images (kohya does not apply
 * the EXIF orientation; dinofeat does).
 */
import type { CropBox, Size } from './buckets.js';
import type { CropsEntry } from './crops-entry.js';

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
