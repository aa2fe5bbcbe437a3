/** One image found by a source: where to read it and the key it is stored under. */
export interface SourceImage {
  /** Path relative to its input root, '/' separators; stable across machines. */
  key: string;
  /** Absolute path; a Buffer when the name is not valid UTF-8, so it can still be opened. */
  path: string | Buffer;
  /** Printable form of the path for logs and the errors file. */
  display: string;
}

/** Something a source found but cannot offer as an image (dangling link, loop, unreadable dir). */
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
