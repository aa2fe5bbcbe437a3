/**
 * The CLI edge as a user meets it: a reader that closes the pipe early (`dinofeat extract --help |
 * head`) ends the command quietly; flag groups are the same in every command that takes them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { DEFAULT_RECOMPUTE } from '../src/validate/validate.js';
import { CLI, runCli } from './helpers/cli.js';

/** Runs the built CLI with its stdout closed by the reader before the command writes anything. */
function runWithClosedStdout(args: readonly string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Node takes far longer to start than this takes: every write of the child meets a closed pipe.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

test('a closed stdout ends the command quietly: help exits 0, other commands with their own code', async () => {
  for (const args of [['extract', '--help'], ['--help'], ['models'], ['buckets', '--buckets', 'sdxl']]) {
    const r = await runWithClosedStdout(args);
    assert.deepEqual(r, { code: 0, signal: null, stderr: '' }, `dinofeat ${args.join(' ')}`);
  }
  const usage = await runWithClosedStdout(['buckets', '--bucket-min', 'x']);
  assert.equal(usage.code, 2, 'a usage error keeps its code');
  assert.doesNotMatch(usage.stderr, /EPIPE|at .*\.js:\d+/);
});

/** The trainer sizes of a `dinofeat buckets` table. */
async function bucketSizes(args: readonly string[]): Promise<Array<[number, number]>> {
  const r = await runCli(['buckets', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/^(\d+)x(\d+) /gm)].map((m) => [Number(m[1]), Number(m[2])]);
}

test('dinofeat buckets takes every bucket flag extract takes: --bucket-min / --bucket-max bound auto sides', async () => {
  const wide = await bucketSizes(['--buckets', 'auto']);
  const bounded = await bucketSizes(['--buckets', 'auto', '--bucket-min', '768', '--bucket-max', '1280']);
  assert.ok(wide.some(([w, h]) => Math.min(w, h) < 768), 'the default limits reach below 768');
  assert.ok(bounded.length > 0 && bounded.length < wide.length);
  for (const [w, h] of bounded) assert.ok(Math.min(w, h) >= 768 && Math.max(w, h) <= 1280, `${w}x${h}`);
  // The default step is four patches, also for patch 14 (DINOv2): 56, not 64.
  for (const [w, h] of await bucketSizes(['--buckets', 'auto', '--patch-size', '14'])) assert.ok(w % 56 === 0 && h % 56 === 0, `${w}x${h}`);
});

test('help shows the shared defaults: the cache directory and the recompute sample', async () => {
  // Help is wrapped to the terminal's width: compare with the line breaks taken out.
  const help = async (command: string) => (await runCli([command, '--help'])).stdout.replace(/\s+/g, ' ');
  for (const command of ['validate', 'inspect']) assert.match(await help(command), /\[target\] .* \(default: "\.\/dinofeat-cache"\)/);
  assert.match(await help('extract'), /-o, --out <dir> cache directory \(default: "\.\/dinofeat-cache"\)/);
  assert.match(await help('validate'), new RegExp(`--recompute <n> .*\\(default: ${DEFAULT_RECOMPUTE} for a cache directory\\)`));
});
