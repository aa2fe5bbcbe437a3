/**
 * Test-only crash points: the moments of the cache's commit protocol where a crash leaves a state
 * that the next open must repair. With DINOFEAT_FAULT=<point>[:<count>] in the environment, the
 * process kills itself with SIGKILL the count-th time (default: the first) it reaches that point,
 * so a test can crash it exactly there instead of hoping a timed kill lands in a window of
 * microseconds. The variable is read once; without it a point costs one comparison.
 *
 * The points, in the order a run meets them:
 *   lock-taken            cache/open.ts: cache.json holds the run's identity and the part's lock is held; nothing else yet
 *   shard-group-written   shard/shard-writer.ts: a row group of a shard is in its temp file, the
 *                         shard is not finished (no footer, not renamed)
 *   shard-renamed         cache/shard-sink.ts: a finished shard has its final name, its journal
 *                         line is not written: a shard file the journal does not name
 *   journal-line-torn     cache/jsonl.ts: the first half of a journal line is written
 *   errors-line-torn      cache/jsonl.ts: the first half of a line of a part's errors log is written
 *   stale-row-replaced    cache/remove-keys.ts: the shard rewritten without a stale row is journaled
 *                         as replacing the old one, the old file (stale row included) is not deleted
 *   manifest-temp-written cache/manifest-summary.ts: manifest.json's temp file is written, not renamed
 */
export const FAULT_POINTS = [
  'lock-taken',
  'shard-group-written',
  'shard-renamed',
  'journal-line-torn',
  'errors-line-torn',
  'stale-row-replaced',
  'manifest-temp-written',
] as const;

export type FaultPointName = (typeof FAULT_POINTS)[number];

export const FAULT_ENV = 'DINOFEAT_FAULT';

interface ArmedFault {
  point: string;
  /** Reaches of the point left before the kill. */
  left: number;
}

function armed(spec: string | undefined): ArmedFault | undefined {
  if (!spec) return undefined;
  const [point = '', count = '1'] = spec.split(':');
  if (!(FAULT_POINTS as readonly string[]).includes(point) || !/^[1-9]\d*$/.test(count)) {
    throw new Error(`${FAULT_ENV}=${spec}: expected <point>[:<count>] with a point among ${FAULT_POINTS.join(', ')}`);
  }
  return { point, left: Number(count) };
}

const fault = armed(process.env[FAULT_ENV]);

/**
 * Crash point `name`: SIGKILLs this process when DINOFEAT_FAULT names it and this is the reach it
 * counts to. `beforeDeath` runs first, synchronously (e.g. to write half a line for real).
 */
export function faultPoint(name: FaultPointName, beforeDeath?: () => void): void {
  if (fault?.point !== name || --fault.left > 0) return;
  beforeDeath?.();
  process.kill(process.pid, 'SIGKILL');
}
