/** `dinofeat devices`: what this onnxruntime-node offers, and what actually starts here. */
import { EXIT } from '../core/errors.js';
import { DataType, GraphBuilder, encodeModel } from '../onnx/builder.js';
import { HOW_TO_GET, listDevices, startSession } from '../model/devices.js';

function probeModel(): Uint8Array {
  const g = new GraphBuilder('probe');
  const x = g.input('x', DataType.FLOAT, [1]);
  g.rename(g.op('Identity', [x]), 'y');
  g.output('y', DataType.FLOAT, [1]);
  return encodeModel(g, { opsets: { '': 18 } });
}

export async function runDevices(): Promise<number> {
  const model = probeModel();
  for (const d of listDevices()) {
    let status: string;
    try {
      const s = await startSession(model, { device: d.name, threads: 1 }, 'probe');
      await s.close();
      status = 'available';
    } catch {
      status = `not available here${HOW_TO_GET[d.name] ? `: ${HOW_TO_GET[d.name]}` : ''}`;
    }
    process.stdout.write(`${d.name.padEnd(10)} ${d.bundled ? 'bundled ' : 'separate'}  ${status}\n`);
  }
  return EXIT.ok;
}
