/**
 * The layer order of docs/architecture.md, enforced: a module imports only from its own folder or
 * from folders below it (type-only imports too), and no import circle exists anywhere in src/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

/** Lowest first; folders on one line may not import each other. Top-level files are named without .ts. */
const LAYERS: readonly (readonly string[])[] = [
  ['core'],
  ['onnx'],
  ['model'],
  ['source', 'image'],
  ['shard'],
  ['cache'],
  ['convert'],
  ['store'],
  ['pipeline'],
  ['validate', 'inspect'],
  ['commands'],
  ['cli'],
];

const SRC = path.resolve('src');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of a file, resolved to .ts files under src/ (static, dynamic and type-only). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(?\s*)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

/** 'cache' for src/cache/x.ts; 'cli' for src/cli.ts and src/cli/*. */
function layerName(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? rel[0]!.replace(/\.ts$/, '') : rel[0]!;
}

function rank(name: string): number {
  const r = LAYERS.findIndex((l) => l.includes(name));
  assert.notEqual(r, -1, `src/${name} is in no layer: add it to LAYERS here and to docs/architecture.md`);
  return r;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => t.startsWith(SRC))]));

test('no module imports from a layer above its own, or from a sibling folder of its layer', () => {
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = layerName(file);
    for (const target of targets) {
      const to = layerName(target);
      if (to === from) continue;
      if (rank(to) >= rank(from)) wrong.push(`${path.relative(SRC, file)} → ${path.relative(SRC, target)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import circle', () => {
  const state = new Map<string, 'open' | 'done'>();
  const circles: string[] = [];
  const visit = (file: string, trail: string[]) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      circles.push([...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(SRC, f)).join(' → '));
      return;
    }
    state.set(file, 'open');
    for (const t of graph.get(file) ?? []) visit(t, [...trail, file]);
    state.set(file, 'done');
  };
  for (const f of files) visit(f, []);
  assert.deepEqual(circles, []);
});

test('the checks see every module and its imports (a parser that found none would make them vacuous)', () => {
  // 103 modules and 358 relative imports when this was written; a quarter fewer means the parser broke, not the code.
  assert.ok(files.length > 75, `${files.length} files`);
  const imports = [...graph.values()].reduce((n, t) => n + t.length, 0);
  assert.ok(imports > 270, `${imports} imports`);
});
