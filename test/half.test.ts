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

/** numpy's float16 bits for `values` (its own rounding: the independent reference). */
function numpyHalves(values: Float32Array): Uint16Array {
  const script = 'import sys,warnings,numpy as np; warnings.simplefilter("ignore"); a=np.frombuffer(sys.stdin.buffer.read(),"<f4"); sys.stdout.buffer.write(a.astype("<f2").tobytes())';
  const out = execFileSync(venvPython(), ['-c', script], { input: Buffer.from(values.buffer, values.byteOffset, values.byteLength), maxBuffer: 1 << 28 });
  return new Uint16Array(out.buffer, out.byteOffset, out.length / 2);
}

test('float32 -> float16 over every exponent, both signs, ties and NaN payloads, across the SIMD kernel\'s chunks and the last values past its groups of four', () => {
  // 70001 values: two whole 32768-value chunks of half.wat, a part chunk, and one value after the
  // last group of four; every fifth value a tie (the halfway bit set, the bits below it clear).
  const bits = new Uint32Array(70_001);
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let k = 0; k < bits.length; k++) {
    bits[k] = k % 5 === 0 ? (next() & 0x80000000) | ((k % 256) << 23) | (next() & 0x7fe000) | 0x1000 : next();
  }
  const values = new Float32Array(bits.buffer);
  const ours = float32ToFloat16(values);
  const theirs = numpyHalves(values);
  for (let k = 0; k < values.length; k++) {
    // NaN: numpy keeps the payload's top bits, this project writes the quiet NaN with the sign kept.
    const want = Number.isNaN(values[k]) ? ((bits[k]! >>> 16) & 0x8000) | 0x7e00 : theirs[k];
    if (ours[k] !== want) assert.fail(`value ${k} (bits 0x${bits[k]!.toString(16)}): ours 0x${ours[k]!.toString(16)}, want 0x${want!.toString(16)}`);
  }
  // A view that starts inside its buffer converts as a copy of itself does.
  assert.deepEqual(float32ToFloat16(values.subarray(3, 40_003)), ours.subarray(3, 40_003));
});

test('float32 -> float16 ties round to the even neighbour: normal, subnormal, at the subnormal edge and at overflow, both signs', () => {
  // [value exactly halfway between two halves, the even one's bits]; round half away from zero
  // would give the odd neighbour in every row marked "down".
  const ties: [string, number, number][] = [
    ['1 + 2^-11 (down to 1)', 1 + 2 ** -11, 0x3c00],
    ['1 + 3*2^-11 (up to 1 + 2^-9)', 1 + 3 * 2 ** -11, 0x3c02],
    ['2049 (down to 2048)', 2049, 0x6800],
    ['2051 (up to 2052)', 2051, 0x6802],
    ['2^-25, half the smallest subnormal (down to 0)', 2 ** -25, 0x0000],
    ['3*2^-25 (up to 2^-23)', 3 * 2 ** -25, 0x0002],
    ['5*2^-25 (down to 2^-23)', 5 * 2 ** -25, 0x0002],
    ['1023.5*2^-24, largest subnormal + half a step (up to 2^-14, the smallest normal)', 1023.5 * 2 ** -24, 0x0400],
    ['65520, halfway between 65504 and 2^16 (up to inf)', 65520, 0x7c00],
  ];
  const cases = ties.flatMap(([name, v, bits]): [string, number, number][] => [[name, v, bits], [`-(${name})`, -v, bits | 0x8000]]);
  // Just above a tie rounds up: the bits below the halfway bit are not dropped.
  cases.push(['1 + 2^-11 + 2^-23 (up)', 1 + 2 ** -11 + 2 ** -23, 0x3c01], ['2^-25 + 2^-40 (up)', 2 ** -25 + 2 ** -40, 0x0001]);
  const values = Float32Array.from(cases.map(([, v]) => v));
  cases.forEach(([name, v], k) => assert.equal(values[k], v, `${name} is exact in float32`));
  // Each case in every lane of the SIMD kernel's groups of four and in the last values after them.
  for (let lead = 0; lead < 4; lead++) {
    const shifted = new Float32Array(lead + values.length);
    shifted.set(values, lead);
    const got = float32ToFloat16(shifted).subarray(lead);
    cases.forEach(([name, , bits], k) => assert.equal(got[k], bits, `${name} at ${lead + k}: got 0x${got[k]!.toString(16)}, want 0x${bits.toString(16)}`));
  }
});
