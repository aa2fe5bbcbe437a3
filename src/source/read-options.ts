/**
 * How a run reads its inputs into keys: what extract's --key-prefix, --image-ext, --image-column
 * and --key-column say. The run record keeps them per input, so validate and merge read the same
 * inputs into the same keys.
 */
import { UserError } from '../core/errors.js';

export interface ReadOptions {
  /** Put before every key of the input (namespaces datasets that share names). */
  keyPrefix: string;
  /** Extensions a tar sample's image may have, best first, lower case without the dot. */
  imageExt: readonly string[];
  /** The Parquet column holding the images (default: found from the schema). */
  imageColumn?: string;
  /** The Parquet column holding the keys (default: `<file name>/<row number>`). */
  keyColumn?: string;
}

export const DEFAULT_IMAGE_EXT: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'];

export const DEFAULT_READ_OPTIONS: ReadOptions = { keyPrefix: '', imageExt: DEFAULT_IMAGE_EXT };

/** --image-ext "jpg,PNG, .webp" → ['jpg', 'png', 'webp']. */
export function parseImageExt(value: string): string[] {
  const list = value.split(',').map((e) => e.trim().replace(/^\./, '').toLowerCase()).filter(Boolean);
  if (list.length === 0) throw new UserError(`--image-ext ${JSON.stringify(value)} names no extension: pass e.g. jpg,png`);
  return list;
}

/** The flags' values (undefined when not given) as options. */
export interface ReadFlagValues {
  keyPrefix?: string;
  imageExt?: string;
  imageColumn?: string;
  keyColumn?: string;
}

export function readOptionsFromFlags(f: ReadFlagValues): Partial<ReadOptions> {
  const o: Partial<ReadOptions> = {};
  if (f.keyPrefix !== undefined) o.keyPrefix = f.keyPrefix;
  if (f.imageExt !== undefined) o.imageExt = parseImageExt(f.imageExt);
  if (f.imageColumn !== undefined) o.imageColumn = f.imageColumn;
  if (f.keyColumn !== undefined) o.keyColumn = f.keyColumn;
  return o;
}

/** Only what differs from the defaults: what the run record keeps (empty: read as always). */
export function nonDefault(o: ReadOptions): Partial<ReadOptions> {
  const out: Partial<ReadOptions> = {};
  if (o.keyPrefix !== DEFAULT_READ_OPTIONS.keyPrefix) out.keyPrefix = o.keyPrefix;
  if (o.imageExt.join(',') !== DEFAULT_IMAGE_EXT.join(',')) out.imageExt = [...o.imageExt];
  if (o.imageColumn !== undefined) out.imageColumn = o.imageColumn;
  if (o.keyColumn !== undefined) out.keyColumn = o.keyColumn;
  return out;
}

export function withDefaults(o: Partial<ReadOptions> | undefined): ReadOptions {
  return { ...DEFAULT_READ_OPTIONS, ...o };
}
