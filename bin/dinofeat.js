#!/usr/bin/env node
// Launcher only. Telemetry off before onnxruntime-node can load: a tool run on private
// datasets must not write a device id or event queue under ~/.cache by default.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
const { main } = await import('../dist/cli.js');
process.exitCode = await main(process.argv);
