/**
 * What a source hands the run: images with their key, a way to read their bytes and where those
 * bytes came from, or problems that become error rows.
 */

/**
 * Where an image's bytes came from, as a row records it (in the journal), so validate and
 * --retry-failed can read them again and a key from another input is told apart.
 */
export type Origin =
  /** A file: from a directory walk or a list (absolute, printable path). */
  | { file: string }
  /** A member of a tar shard (absolute path of the shard, member name as stored). */
  | { tar: string; member: string }
  /** A row of a Parquet file (absolute path, row number counted from 0 over the whole file). */
  | { parquet: string; row: number };

/** One image found by a source: where to read it and the key it is stored under. */
export interface SourceImage {
  /** Relative to its input ('/' separators), or `<shard>/<sample>` for a container; stable across machines. */
  key: string;
  /** The image's bytes: read from its file, or already taken out of a container. */
  read: () => Promise<Buffer>;
  /** Printable form of where it is, for logs and the errors file (`shard.tar:member`, `file.parquet:row 7`). */
  display: string;
  origin: Origin;
}

/** Something a source found but cannot offer as an image (dangling link, loop, unreadable dir, bad container). */
export interface SourceProblem {
  key: string;
  display: string;
  reason: string;
}

export type SourceItem = { image: SourceImage } | { problem: SourceProblem };

export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif',
  // Listed so that users learn they are unsupported (errors log) instead of them vanishing.
  '.heic', '.heif', '.bmp',
]);

export function hasImageExtension(name: string): boolean {
  const dot = name.lastIndexOf('.');
  return dot >= 0 && IMAGE_EXTENSIONS.has(name.slice(dot).toLowerCase());
}

/** The same place: a key met again from the same origin is the same image (perhaps changed). */
export function sameOrigin(a: Origin, b: Origin): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** One line naming an origin, for messages. */
export function describeOrigin(o: Origin): string {
  return 'file' in o ? o.file : 'tar' in o ? `${o.tar}:${o.member}` : `${o.parquet}:row ${o.row}`;
}
