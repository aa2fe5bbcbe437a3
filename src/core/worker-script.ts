/**
 * The compiled script of a worker thread: workers cannot load .ts under Node 20, so they always
 * run from dist/ (tests build first).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/<relative>, found from the package root above this module. */
export function workerScript(relative: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'dist', relative);
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      if (!fs.existsSync(candidate)) throw new Error(`${candidate} is missing: run npm run build`);
      return candidate;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the dinofeat package root');
    dir = up;
  }
}
