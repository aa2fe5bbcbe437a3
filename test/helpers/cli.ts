/** `dinofeat` as a user runs it: bin/dinofeat.js over the built dist/, in a child process. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { start, type Completed, type StartOptions, type Started } from './process.js';

export const CLI = path.resolve('bin/dinofeat.js');

/** `dinofeat <args>` in a child process that the caller may signal (extra environment, stdin, working directory optional). */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, options: Omit<StartOptions, 'env'> = {}): Started {
  assert.ok(fs.existsSync(path.resolve('dist/cli.js')), 'dist/cli.js is missing: run npm run build first (npm test does)');
  return start(process.execPath, [CLI, ...args], { ...options, env });
}

/** `dinofeat <args>` to the end. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, options: Omit<StartOptions, 'env'> = {}): Promise<Completed> {
  return startCli(args, env, options).done;
}
