/**
 * The scripts a user runs first (`npm run demo`, `npm run bench`), and the ConvNeXt measurement,
 * import the built modules by path, which no type-check sees: a module moved in src/ would break
 * them silently. Every path they name
 * must exist in dist/ (npm test builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SCRIPTS = ['scripts/demo.mjs', 'scripts/bench.mjs', 'scripts/bench-host.mjs', 'scripts/convnext-scale.mjs'];

/** dist paths named as `dist('a/b.js')` or `path.join(root, 'dist', 'a', 'b.js')`. */
function distPaths(text: string): string[] {
  const viaHelper = [...text.matchAll(/\bdist\('([^']+\.js)'\)/g)].map((m) => m[1]!);
  const viaJoin = [...text.matchAll(/path\.join\(root, 'dist', ((?:'[^']+',?\s*)+)\)/g)].map((m) =>
    [...m[1]!.matchAll(/'([^']+)'/g)].map((p) => p[1]!).join('/'),
  );
  return [...viaHelper, ...viaJoin];
}

test('every built module the demo and the bench import exists in dist/', () => {
  const named = SCRIPTS.flatMap((s) => distPaths(fs.readFileSync(s, 'utf8')).map((p) => ({ script: s, file: path.join('dist', p) })));
  assert.ok(named.length >= 6, `paths found: ${named.map((n) => n.file)}`);
  const missing = named.filter((n) => !fs.existsSync(n.file)).map((n) => `${n.script}: ${n.file}`);
  assert.deepEqual(missing, []);
});
