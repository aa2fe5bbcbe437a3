import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { peakMemoryBytes } from '../src/core/peak-memory.js';

test('peak memory is this process\'s own, not the memory of the process that started it', { skip: process.platform !== 'linux' && 'getrusage inherits only on Linux' }, () => {
  const held = Buffer.alloc(400 * 2 ** 20, 1); // the parent holds 400 MiB when it starts the child
  const module = pathToFileURL(path.resolve('dist/core/peak-memory.js')).href;
  const child = execFileSync(process.execPath, ['--input-type=module', '-e', `
    const { peakMemoryBytes } = await import(${JSON.stringify(module)});
    console.log(JSON.stringify({ ours: peakMemoryBytes(), maxrss: process.resourceUsage().maxRSS * 1024 }));`], { encoding: 'utf8' });
  const { ours, maxrss } = JSON.parse(child) as { ours: number; maxrss: number };
  assert.ok(maxrss >= held.length, `getrusage reports the parent's memory (${maxrss >> 20} MiB): the case this guards against`);
  assert.ok(ours < 200 * 2 ** 20, `the child's own peak is small: ${ours >> 20} MiB`);
  assert.ok(peakMemoryBytes() >= held.length, 'and a process that did hold the memory reports it');
});
