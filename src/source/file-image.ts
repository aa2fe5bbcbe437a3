/** An image file (from a walk or a list) as a source image: read when its turn comes. */
import fs from 'node:fs/promises';
import type { SourceImage } from './types.js';

/** `file` is a Buffer when its name is not valid UTF-8, so it can still be opened. */
export function fileImage(key: string, file: string | Buffer, display: string): SourceImage {
  return { key, read: () => fs.readFile(file), display, origin: { file: display } };
}
