/**
 * examples/cluster/slurm-array.sh on a real SLURM: scripts/slurm-local.sh starts a single-node
 * cluster (munged, slurmctld, slurmd on 127.0.0.1, installed with apt when missing), a 4-task
 * array extracts one image tree into one cache, one running task is SIGKILLed through the
 * scheduler and its index resubmitted as the example says, then `dinofeat merge` reports no gap
 * and a plain DuckDB read finds every image exactly once. Skipped, with the reason, only where the
 * host cannot run SLURM (not root, apt unreachable); CI installs the packages first.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { lockPath } from '../src/cache/layout.js';
import { pidAlive, type LockHolder } from '../src/cache/lock.js';
import { workerOfKey } from '../src/source/partition.js';
import { readShardRows, summaryCounts } from './fixtures/cache-reads.js';
import { makeWorkspace } from './fixtures/workspace.js';
import { runCli } from './helpers/cli.js';
import { run, type Completed } from './helpers/process.js';
import { tempDir } from './helpers/temp.js';

const SCRIPT = path.resolve('scripts/slurm-local.sh');
const EXAMPLE = path.resolve('examples/cluster/slurm-array.sh');
/** slurm-local.sh's exit status for "this host cannot run it". */
const CANNOT_RUN_HERE = 3;
const TASKS = 4;
const IMAGES = 40;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `ready` every 100 ms; fails naming `what` after `ms`. */
async function waitFor(what: string, ms: number, ready: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ready())) {
    assert.ok(Date.now() < end, `timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

function ok(r: Completed, what: string): string {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The cluster's commands (sbatch, squeue, scontrol, scancel) against the test's slurm.conf. */
function slurm(conf: string) {
  const env = { SLURM_CONF: conf };
  const cmd = async (name: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    ok(await run(name, args, { env: { ...env, ...extraEnv } }), `${name} ${args.join(' ')}`);
  return {
    /** Submits the example as an array over `indices`; returns the job id. */
    async submit(indices: string, images: string, cache: string, logs: string, extraEnv: NodeJS.ProcessEnv): Promise<string> {
      // The example asks for 8 CPUs and 16 GB per task; the test node may have 2 CPUs.
      const args = ['--parsable', `--array=${indices}`, '--cpus-per-task=1', '--mem=1G', `--output=${logs}/%A_%a.out`, EXAMPLE, images, cache];
      return (await cmd('sbatch', args, extraEnv)).trim();
    },
    /** Array task index → JobState, for the tasks of `job` that scontrol still knows. */
    async states(job: string): Promise<Map<number, string>> {
      const states = new Map<number, string>();
      for (const line of (await cmd('scontrol', ['-o', 'show', 'job', job])).split('\n').filter(Boolean)) {
        const task = /\bArrayTaskId=(\d+)\b/.exec(line);
        const state = /\bJobState=(\S+)/.exec(line);
        if (task && state) states.set(Number(task[1]), state[1]);
      }
      return states;
    },
    async queued(): Promise<boolean> {
      return (await cmd('squeue', ['-h', '-o', '%i'])).trim() !== '';
    },
    kill: (job: string, index: number) => cmd('scancel', ['--signal=KILL', `${job}_${index}`]),
  };
}

/** Starts the single-node cluster in a temp dir, stopped when the test ends; undefined (and the test skipped) where the host cannot run it. */
async function startCluster(t: TestContext): Promise<string | undefined> {
  const dir = tempDir();
  const started = Date.now();
  const r = await run('bash', [SCRIPT, 'start', dir]);
  if (r.code === CANNOT_RUN_HERE) {
    const reason = r.stderr.trim().split('\n').pop() ?? 'slurm-local.sh cannot run here';
    console.log(`slurm.test.ts skipped: ${reason}`);
    t.skip(reason);
    return undefined;
  }
  t.after(async () => {
    ok(await run('bash', [SCRIPT, 'stop', dir]), 'slurm-local.sh stop');
    for (const daemon of ['munged', 'slurmctld', 'slurmd']) {
      const pidFile = path.join(dir, `${daemon}.pid`);
      const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : undefined;
      assert.ok(pid === undefined || !pidAlive(pid), `${daemon} (pid ${pid}) still runs after stop`);
    }
  });
  ok(r, 'slurm-local.sh start');
  t.diagnostic(`single-node SLURM (install if missing, start, node idle) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return path.join(dir, 'slurm.conf');
}

test('slurm-array.sh: a 4-task array with one task SIGKILLed and resubmitted stores every image exactly once', { timeout: 600_000 }, async (t) => {
  const conf = await startCluster(t);
  if (conf === undefined) return;
  const cluster = slurm(conf);
  const ws = await makeWorkspace(IMAGES);
  const cache = path.join(ws.dir, 'cache');
  const logs = path.join(ws.dir, 'logs');
  fs.mkdirSync(logs);
  const env = { DINOFEAT_MODEL: ws.model };

  // The task with the most images is killed: the most work to interrupt.
  const keysOf = (index: number) => ws.keys.filter((k) => workerOfKey(k, TASKS) === index);
  const victim = [...Array(TASKS).keys()].reduce((best, i) => (keysOf(i).length > keysOf(best).length ? i : best));
  const victimPart = `${victim}_of_${TASKS}`;

  const job = await cluster.submit(`0-${TASKS - 1}`, ws.images, cache, logs, env);
  // Its lock names the process once it has opened the cache: it is extracting.
  const lock = lockPath(cache, victimPart);
  await waitFor(`task ${victim} to open the cache`, 120_000, () => fs.existsSync(lock));
  const holder = JSON.parse(fs.readFileSync(lock, 'utf8')) as LockHolder;
  await cluster.kill(job, victim);
  // Before the array ends: a process that outlived its task would go on writing its part.
  await waitFor(`the killed task's dinofeat (pid ${holder.pid}) to be gone`, 30_000, () => !pidAlive(holder.pid));
  if (holder.writer) await waitFor(`its extract process (pid ${holder.writer.pid}) to be gone`, 30_000, () => !pidAlive(holder.writer!.pid));
  await waitFor('the array to end', 300_000, async () => !(await cluster.queued()));

  const states = await cluster.states(job);
  const others = [...Array(TASKS).keys()].filter((i) => i !== victim);
  assert.deepEqual(others.map((i) => states.get(i)), others.map(() => 'COMPLETED'), `the other tasks completed: ${[...states]}`);
  assert.notEqual(states.get(victim), 'COMPLETED', 'the killed task did not complete');
  assert.ok(fs.existsSync(lock), 'the killed task left its lock (it died, it did not stop)');

  const again = await cluster.submit(String(victim), ws.images, cache, logs, { ...env, DINOFEAT_NUM_WORKERS: String(TASKS) });
  await waitFor('the resubmitted task to end', 300_000, async () => !(await cluster.queued()));
  const rerunLog = fs.readFileSync(path.join(logs, `${again}_${victim}.out`), 'utf8');
  assert.equal((await cluster.states(again)).get(victim), 'COMPLETED', rerunLog);
  const rerun = summaryCounts(rerunLog);
  assert.equal(rerun.found, keysOf(victim).length, 'the resubmitted task reads only its own part, not every image');
  assert.equal(rerun.failed, 0);
  assert.ok(rerun.extracted > 0, 'the resubmitted task extracted what the kill cut short');

  const merge = await runCli(['merge', cache, '--images', ws.images]);
  assert.equal(merge.code, 0, merge.stdout + merge.stderr);
  assert.match(merge.stdout, /gaps: 0 images/);
  assert.deepEqual((await readShardRows(cache)).map((r) => r.key), [...ws.keys].sort(), 'a plain read of the shards has every image exactly once');
});
