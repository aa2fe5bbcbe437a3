import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { float16ToFloat32, float32ToFloat16 } from '../src/core/half.js';
import { venvPython } from './helpers/python.js';

test('float32 -> float16 -> float32 matches numpy bit for bit (rounding, subnormals, inf, NaN)', () => {
  // Binary in and out: numpy's own fp16 bytes, compared bit for bit.
  const py = venvPython();
  const special = [0, -0, 1, -1, 65504, 65520, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, 0.1, 1 / 3, Infinity, -Infinity, NaN];
  const rand = Array.from({ length: 5000 }, (_, k) => Math.sin(k * 12.9898) * 10 ** ((k % 14) - 8));
  const values = Float32Array.from([...special, ...rand]);
  const ours = float32ToFloat16(values);
  const numpy = execFileSync(py, ['-c', 'import sys,numpy as np; a=np.frombuffer(sys.stdin.buffer.read(),"<f4"); sys.stdout.buffer.write(a.astype("<f2").tobytes())'], { input: Buffer.from(values.buffer) });
  const theirs = new Uint16Array(numpy.buffer, numpy.byteOffset, numpy.length / 2);
  for (let k = 0; k < values.length; k++) {
    const bothNaN = Number.isNaN(values[k]) && (theirs[k]! & 0x7c00) === 0x7c00 && (ours[k]! & 0x3ff) !== 0;
    assert.ok(bothNaN || ours[k] === theirs[k], `value ${values[k]}: ours ${ours[k]!.toString(16)} numpy ${theirs[k]!.toString(16)}`);
  }
  const back = float16ToFloat32(ours);
  const npBack = execFileSync(py, ['-c', 'import sys,numpy as np; a=np.frombuffer(sys.stdin.buffer.read(),"<f2"); sys.stdout.buffer.write(a.astype("<f4").tobytes())'], { input: Buffer.from(ours.buffer) });
  assert.deepEqual(Buffer.from(back.buffer), npBack);
});
