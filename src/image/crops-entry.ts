/**
 * One image's entry in a trainer's record (--crops), whatever wrote it, and how a dinofeat key finds
 * it. dinofeat's keys are paths relative to the input folder; trainers key images otherwise: kohya
 * by the file name without its extension (or the path as globbed with --full_path), SimpleTuner by
 * the absolute path. So a record keyed by paths is matched on whole trailing path components.
 */
import type { CropBox, Size } from './buckets.js';

export interface CropsEntry {
  /** The trainer's bucket: the size of the image it encoded, before --dino-scale. */
  bucket: Size;
  /** The crop box in upright source pixels for an image of this upright size, or why there is none. */
  crop: (size: Size) => CropBox | { problem: string };
  flip?: boolean;
  /** Set when the record holds this image but unusably (an unreadable cache file): its error row. */
  problem?: string;
}

/** How a record names its images: dinofeat's keys, trainer paths or stems, paths without extension. */
export type KeyStyle = 'exact' | 'path-or-stem' | 'no-extension';

/** The file name without its extension: kohya's default image key. */
const stemOf = (key: string) => key.slice(key.lastIndexOf('/') + 1).replace(/\.[^.]*$/, '');

/** Finds a dinofeat key's entry: exact, by trailing path or file stem, or by the key without its extension. */
export class EntryIndex {
  private readonly exact: ReadonlyMap<string, CropsEntry>;
  /** Every trailing run of path components of each record key → the record keys ending so. */
  private readonly tails = new Map<string, string[]>();

  constructor(entries: ReadonlyMap<string, CropsEntry>, private readonly style: KeyStyle) {
    this.exact = entries;
    if (style !== 'path-or-stem') return;
    for (const key of entries.keys()) {
      const parts = key.replace(/\\/g, '/').split('/');
      for (let i = 1; i < parts.length; i++) {
        const tail = parts.slice(i).join('/');
        const list = this.tails.get(tail);
        if (list) list.push(key);
        else this.tails.set(tail, [key]);
      }
    }
  }

  get size(): number {
    return this.exact.size;
  }

  /** The entry, undefined when the record has none, or a problem when it names two. */
  find(key: string): CropsEntry | { problem: string } | undefined {
    if (this.style === 'no-extension') return this.exact.get(key.replace(/\.[^./]*$/, ''));
    const hit = this.exact.get(key);
    if (hit || this.style === 'exact') return hit;
    const byPath = this.tails.get(key) ?? [];
    const stem = stemOf(key);
    const byStem = this.exact.has(stem) ? [stem] : [];
    const found = [...new Set([...byPath, ...byStem])];
    if (found.length > 1) return { problem: `the crops file has ${found.length} entries that match this key (${found.slice(0, 3).join(', ')}): give each image one entry` };
    return found.length ? this.exact.get(found[0]!) : undefined;
  }
}
