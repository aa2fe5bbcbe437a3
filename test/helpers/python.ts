/** The project's Python venv (.venv, made by scripts/python-env.sh; CI makes it): the independent readers and references. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { run, type Completed } from './process.js';

/** The venv's Python; tests that need it fail loudly without it. */
export function venvPython(): string {
  const python = path.resolve('.venv/bin/python');
  assert.ok(fs.existsSync(python), `${python} is missing: create the venv with scripts/python-env.sh (CI does)`);
  return python;
}

/** `python args` (a file, or '-c', code), stdin optional; the result says how it ended. */
export function runPython(args: readonly string[], stdin?: string): Promise<Completed> {
  return run(venvPython(), args, { stdin });
}

/** runPython that must succeed (the test fails with Python's stderr otherwise): its stdout. */
export async function pythonStdout(args: readonly string[], stdin?: string): Promise<string> {
  const r = await runPython(args, stdin);
  assert.equal(r.code, 0, `python ${args[0] === '-c' ? '-c' : path.basename(args[0] ?? '')} failed:\n${r.stderr}`);
  return r.stdout;
}

/** pythonStdout parsed as JSON. */
export async function pythonJson<T>(args: readonly string[], stdin?: string): Promise<T> {
  return JSON.parse(await pythonStdout(args, stdin)) as T;
}
