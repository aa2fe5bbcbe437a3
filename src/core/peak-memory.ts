/**
 * The most memory this process has held, in bytes. On Linux, getrusage's maxrss (Node's
 * resourceUsage().maxRSS) survives fork + exec: a dinofeat started by a process holding 600 MiB
 * reports at least 600 MiB however little it used. /proc's VmHWM is the high-water mark of this
 * program's own memory, so it is read first.
 */
import fs from 'node:fs';

export function peakMemoryBytes(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // No /proc (macOS, Windows): maxrss is what there is.
  }
  return process.resourceUsage().maxRSS * 1024;
}
