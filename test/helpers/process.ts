/** Child processes for tests: output collected, exit awaited, stdin optional. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Completed {
  code: number;
  /** The signal that ended it, if one did. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Started {
  child: ChildProcess;
  /** Resolves when the process has exited (also by a signal) and its output is complete. */
  done: Promise<Completed>;
}

export interface StartOptions {
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Written to its stdin, which is then closed (empty when not given). */
  stdin?: string;
  /** Killed (SIGTERM) after this many milliseconds. */
  timeoutMs?: number;
  /** Working directory (default: this process's). */
  cwd?: string;
}

/** Starts `command args` with stdout and stderr collected; the caller may signal `child`. */
export function start(command: string, args: readonly string[], { env = {}, stdin = '', timeoutMs, cwd }: StartOptions = {}): Started {
  // No __pycache__ left in examples/ or test/ by the Python runs.
  const child = spawn(command, args, {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
    timeout: timeoutMs,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Completed>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr }));
  });
  // No write when there is nothing to write: a child that exits at once would make it fail with EPIPE.
  if (stdin) child.stdin.end(stdin);
  else child.stdin.end();
  return { child, done };
}

/** `command args` to the end. */
export function run(command: string, args: readonly string[], options: StartOptions = {}): Promise<Completed> {
  return start(command, args, options).done;
}

/** node's arguments that run `script` as an ES module that may import src/*.ts (through tsx), `args` after it. */
export function tsxEval(script: string, ...args: string[]): string[] {
  return ['--import', 'tsx', '--input-type=module', '-e', script, ...args];
}
