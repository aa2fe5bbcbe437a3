/** `dinofeat devices`: what this onnxruntime-node offers, and what actually starts here. */
import { EXIT } from '../core/errors.js';
import { probeDevices } from '../model/devices.js';

export async function runDevices(): Promise<number> {
  for (const d of await probeDevices()) {
    const status = d.available ? 'available' : `not available here${d.howToGet ? `: ${d.howToGet}` : ''}`;
    process.stdout.write(`${d.name.padEnd(10)} ${d.bundled ? 'bundled ' : 'separate'}  ${status}\n`);
  }
  return EXIT.ok;
}
