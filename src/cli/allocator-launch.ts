/**
 * `dinofeat extract` on Linux with glibc runs in a child process started with allocator settings,
 * because glibc reads them only when a process starts. With its defaults, glibc gives the memory of
 * freed decoded frames back to the kernel and faults it in again for the next ones (a fresh page
 * cost about 1 ms a MiB on the 2-core VM): measured there, 60 camera-sized JPEGs went from 23.5 to
 * 27.6–30.1 img/s and 512 photo-sized ones from a tar shard from 97–98 to 113–114 img/s, with lower
 * peaks (docs/speed.md, glibc's allocator). Variables the user set win, and none are set then.
 *
 * The launcher stays the process users see: it relays SIGINT, SIGTERM and SIGHUP (core/stop-signals.ts
 * counts a relayed signal and its direct twin once), ends as its child ended (the same exit code,
 * or the same signal), and the child kills itself the moment the launcher is gone (kill -9), so a
 * killed launcher never leaves a writer behind.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import v8 from 'node:v8';
import { isRelayedSignal, launcherPid, LAUNCHER_PID_ENV, type RelayedSignal } from '../core/launcher.js';
import { relayedSignal, STOP_SIGNALS, type StopSignal } from '../core/stop-signals.js';

/** Variables that tune glibc's allocator: any of them set by the user means no relaunch. */
export const ALLOCATOR_VARIABLES = ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES'] as const;

/** Frames up to this size come from the heap: up to about 11 MP (a 12 MP camera frame, 34-35 MiB, gets its own mapping). */
const HEAP_FRAME_BYTES = 32 * 2 ** 20;
/** Freed memory that stays with each heap for the next frames. */
const KEPT_BYTES = 64 * 2 ** 20;

export interface Host {
  platform: NodeJS.Platform;
  /** glibc's version, or undefined (musl, other systems). */
  glibc: string | undefined;
  cores: number;
}

export function thisHost(): Host {
  const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  return { platform: process.platform, glibc: report.header?.glibcVersionRuntime, cores: os.availableParallelism() };
}

/**
 * The settings, where glibc is the allocator and the environment sets none (the user's win).
 * MMAP_THRESHOLD (which also turns off glibc's own adjusting of it) keeps frames up to 32 MiB
 * (11 MP of RGB8) on the heap; larger ones get their own mapping, handed back when freed: kept on
 * the heap too (a threshold of 64 MiB), 18-26 MP photos left peaks of 503-627 MiB against 399-415
 * over 20 of them, and at 40 MiB 12 MP ones left peaks of 483-591 against 450-491 over 240
 * camera-sized JPEGs (eleven runs each), both times with the same CPU (docs/speed.md).
 * TRIM_THRESHOLD keeps up to 64 MiB of freed memory per heap; one arena per core holds the peak
 * (with no limit, 633 MiB on the camera-sized run against 499–531; one arena for everything slowed
 * small images' decodes, which then queue on its lock).
 * `glibc.malloc.hugetlb=1` (glibc 2.35 and later; older ones ignore it) asks the kernel for
 * transparent huge pages on the heaps, where it allows them only when asked (`madvise`, a common
 * default): one fault per 2 MiB instead of per 4 KiB when a heap grows. On the 2-core VM, 60
 * camera-sized JPEGs took 47–55 instead of 64–76 ms of CPU an image (docs/speed.md).
 */
export function allocatorSettings(env: NodeJS.ProcessEnv, host: Host): Record<string, string> | undefined {
  if (host.platform !== 'linux' || host.glibc === undefined) return undefined;
  if (ALLOCATOR_VARIABLES.some((v) => env[v] !== undefined)) return undefined;
  return {
    MALLOC_ARENA_MAX: String(Math.max(2, host.cores)),
    MALLOC_MMAP_THRESHOLD_: String(HEAP_FRAME_BYTES),
    MALLOC_TRIM_THRESHOLD_: String(KEPT_BYTES),
    GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
  };
}

/**
 * V8's heap, for extract's main thread: an isolate started with it may hold this much in its old generation before a
 * full collection (V8 then never lowers the limit below it). V8 counts the ArrayBuffers a thread
 * takes in since its last full collection against that limit, and the main thread takes in each
 * image's pixels and each batch's tensors (handing them on at once, so none is garbage): with its
 * default limit (~37 MiB over a 13 MiB heap), that alone started 39–52 full collections over 1800
 * ImageNet-sized JPEGs, about 0.55 ms of CPU an image in marking and sweeping on V8's threads; at
 * 96 MiB, one (docs/speed.md). Only the main thread keeps it (`adoptLauncher`): the worker threads
 * start with V8's default, so those that take in large tensors (the model's, the row encoder) free
 * them as often as before. A user's own setting (`node --initial-old-space-size=N`) wins, for every thread.
 */
export const MAIN_HEAP_FLAG = '--initial-old-space-size=96';

/** A Node flag's name as V8 reads it (`-` and `_` alike). */
const flagName = (flag: string) => flag.replace(/^--/, '').split('=')[0]!.replaceAll('_', '-');

/** MAIN_HEAP_FLAG, unless the user gave Node their own (NODE_OPTIONS may not hold it). */
export function heapFlags(execArgv: readonly string[]): string[] {
  return execArgv.some((a) => a.startsWith('--') && flagName(a) === flagName(MAIN_HEAP_FLAG)) ? [] : [MAIN_HEAP_FLAG];
}

/**
 * The allocator settings to relaunch `argv` with, or undefined to run in this process: only
 * extract (the command that decodes many images), never twice. `host` is asked only for extract
 * (a process report takes milliseconds).
 */
export function allocatorRelaunch(argv: readonly string[], env: NodeJS.ProcessEnv, host: () => Host): Record<string, string> | undefined {
  if (argv.slice(2).find((a) => !a.startsWith('-')) !== 'extract' || env[LAUNCHER_PID_ENV] !== undefined) return undefined;
  return allocatorSettings(env, host());
}

/**
 * Runs this command in a child process with the allocator settings (and MAIN_HEAP_FLAG) when
 * `allocatorRelaunch` says so, and returns true: this process then only relays signals and ends as the child ends.
 * Returns false when the command should run here.
 */
export function launchWithAllocator(argv: readonly string[]): boolean {
  const settings = allocatorRelaunch(argv, process.env, thisHost);
  if (!settings) return false;
  const child = spawn(process.execPath, [...heapFlags(process.execArgv), ...process.execArgv, ...argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...settings, [LAUNCHER_PID_ENV]: String(process.pid) },
  });
  const relay = (signal: StopSignal) => {
    // A child that is ending has its own signal or none to take (no 'error' event: that is for a failed start).
    if (child.connected) child.send({ relay: signal } satisfies RelayedSignal, () => {});
  };
  for (const s of STOP_SIGNALS) process.on(s, relay);
  child.on('error', (e) => {
    process.stderr.write(`dinofeat: could not start the extract process (${e.message}); set GLIBC_TUNABLES= (empty) to run extract in this process\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    for (const s of STOP_SIGNALS) process.off(s, relay);
    if (signal) {
      // End by the same signal, so shells and schedulers see what happened to the run.
      process.kill(process.pid, signal);
      setImmediate(() => process.exit(128 + (os.constants.signals[signal] ?? 0)));
      return;
    }
    process.exit(code ?? 1);
  });
  return true;
}

/**
 * In the child: take relayed signals, die with the launcher, and start later isolates (worker
 * threads) with V8's default heap, MAIN_HEAP_FLAG having set this one's (V8 reads the flag as each
 * isolate starts). Does nothing in other processes.
 */
export function adoptLauncher(): void {
  if (launcherPid() === undefined || !process.channel) return;
  if (process.execArgv[0] === MAIN_HEAP_FLAG) v8.setFlagsFromString(`--${flagName(MAIN_HEAP_FLAG)}=0`);
  process.on('message', (m) => {
    if (isRelayedSignal(m)) relayedSignal(m.relay);
  });
  // The launcher was killed (its end of the channel closed): no writer may outlive it.
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  // The channel must not keep this process alive once its work is done.
  process.channel.unref();
}
