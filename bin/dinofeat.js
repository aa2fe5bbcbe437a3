#!/usr/bin/env node
import os from 'node:os';

// Launcher only. Telemetry off before onnxruntime-node can load: a tool run on private
// datasets must not write a device id or event queue under ~/.cache by default.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
// sharp decodes on libuv's pool (4 threads by default); extract keeps one decode per core in
// flight, so the pool must be that large before anything starts it.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, os.availableParallelism()));
const { launchWithAllocator, adoptLauncher } = await import('../dist/cli/allocator-launch.js');
// extract on glibc runs in a child process with allocator settings (src/cli/allocator-launch.ts).
if (!launchWithAllocator(process.argv)) {
  adoptLauncher();
  const { main } = await import('../dist/cli.js');
  const { EXIT } = await import('../dist/core/errors.js');
  try {
    process.exitCode = await main(process.argv);
  } catch (e) {
    // Not a user error: a bug. Show the stack and exit 70 (EX_SOFTWARE), so scripts can tell it
    // from 1 (some images failed).
    console.error(e);
    process.exitCode = EXIT.bug;
  }
}
