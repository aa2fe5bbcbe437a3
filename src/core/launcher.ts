/**
 * On Linux with glibc, `dinofeat extract` runs in a child process that the launcher
 * (cli/allocator-launch.ts) starts with settings for glibc's allocator, which glibc reads only when
 * a process starts. The launcher is the process users and scripts see: its pid is the one they
 * signal or kill, so the child names it where a pid is shown (the cache lock) and dies with it.
 */
import { STOP_SIGNALS, type StopSignal } from './stop-signals.js';

/** Set by the launcher in its child's environment: the launcher's pid. */
export const LAUNCHER_PID_ENV = 'DINOFEAT_LAUNCHER_PID';

/** The launcher's pid when this process is its child (and the launcher still its parent), else undefined. */
export function launcherPid(): number | undefined {
  const pid = Number(process.env[LAUNCHER_PID_ENV]);
  return Number.isInteger(pid) && pid > 0 && pid === process.ppid ? pid : undefined;
}

/** The message that carries a signal the launcher received on to its child. */
export interface RelayedSignal {
  relay: StopSignal;
}

export function isRelayedSignal(m: unknown): m is RelayedSignal {
  return typeof m === 'object' && m !== null && STOP_SIGNALS.includes((m as RelayedSignal).relay);
}
