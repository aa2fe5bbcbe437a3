/**
 * Splitting one image set over N workers: a hash of the key decides, so the split does not depend
 * on listing order and every worker agrees without talking to the others. With at least as many
 * container files (tar shards, Parquet files) as workers, the file is the unit instead: each
 * worker opens only its own files.
 */
import { createHash } from 'node:crypto';
import { UserError } from '../core/errors.js';

export interface WorkerSlot {
  index: number;
  count: number;
  /** Where the slot came from, for the run summary. */
  origin: string;
}

export function workerOfKey(key: string, count: number): number {
  if (count <= 1) return 0;
  const h = createHash('sha1').update(key).digest();
  return Number(h.readBigUInt64BE(0) % BigInt(count));
}

/**
 * The container files `slot` owns, or undefined when there are fewer containers than workers (then
 * the key hash splits them too). Files are dealt round-robin in sorted order, so every worker
 * given the same files (in any order) agrees and the counts differ by at most one.
 */
export function ownedContainers(containers: readonly string[], slot: { index: number; count: number }): ReadonlySet<string> | undefined {
  if (slot.count <= 1 || containers.length < slot.count) return undefined;
  const sorted = [...new Set(containers)].sort();
  return new Set(sorted.filter((_, k) => k % slot.count === slot.index));
}

function intFrom(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`environment variable ${name}=${v} is not a non-negative integer`);
  return n;
}

/**
 * Flags win; otherwise the scheduler's environment: SLURM job arrays, Kubernetes Indexed Jobs
 * (JOB_COMPLETION_INDEX with DINOFEAT_NUM_WORKERS, since the pod does not see the completion
 * count), and torch-style RANK / WORLD_SIZE.
 */
export function resolveWorkerSlot(flags: { numWorkers?: number; workerIndex?: number }, env: NodeJS.ProcessEnv = process.env): WorkerSlot {
  let slot: WorkerSlot = { index: 0, count: 1, origin: 'single worker' };
  if (flags.numWorkers !== undefined || flags.workerIndex !== undefined) {
    slot = { index: flags.workerIndex ?? 0, count: flags.numWorkers ?? 1, origin: '--num-workers/--worker-index' };
  } else if (intFrom(env, 'SLURM_ARRAY_TASK_ID') !== undefined) {
    const id = intFrom(env, 'SLURM_ARRAY_TASK_ID')!;
    const min = intFrom(env, 'SLURM_ARRAY_TASK_MIN') ?? 0;
    const count = intFrom(env, 'SLURM_ARRAY_TASK_COUNT');
    if (count === undefined) throw new UserError('SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --num-workers and --worker-index');
    slot = { index: id - min, count, origin: 'SLURM job array' };
  } else if (intFrom(env, 'JOB_COMPLETION_INDEX') !== undefined) {
    const count = intFrom(env, 'DINOFEAT_NUM_WORKERS');
    if (count === undefined) throw new UserError('JOB_COMPLETION_INDEX is set but DINOFEAT_NUM_WORKERS is not: set it to the Job\'s completions count');
    slot = { index: intFrom(env, 'JOB_COMPLETION_INDEX')!, count, origin: 'Kubernetes Indexed Job' };
  } else if (intFrom(env, 'RANK') !== undefined && intFrom(env, 'WORLD_SIZE') !== undefined) {
    slot = { index: intFrom(env, 'RANK')!, count: intFrom(env, 'WORLD_SIZE')!, origin: 'RANK/WORLD_SIZE' };
  }
  if (!Number.isInteger(slot.count) || slot.count < 1) throw new UserError(`number of workers must be at least 1 (got ${slot.count} from ${slot.origin})`);
  if (!Number.isInteger(slot.index) || slot.index < 0 || slot.index >= slot.count) {
    throw new UserError(`worker index ${slot.index} is outside 0..${slot.count - 1} (from ${slot.origin})`);
  }
  return slot;
}
