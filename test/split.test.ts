import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitTokens } from '../src/model/split.js';

const info = { numRegisters: 2, hiddenSize: 3, tokenLayout: ['cls', 'registers', 'patches'] };

test('tokens split by layout: [CLS, registers, patches row-major], per image', () => {
  // batch 2, grid 2x2 -> 1 + 2 + 4 = 7 tokens of width 3; value = 100*b + token
  const data = new Float32Array(2 * 7 * 3).map((_, k) => 100 * Math.floor(k / 21) + Math.floor((k % 21) / 3));
  const [a, b] = splitTokens(data, [2, 7, 3], info, 2, 2);
  assert.deepEqual(Array.from(a!.cls), [0, 0, 0]);
  assert.deepEqual(Array.from(a!.registers), [1, 1, 1, 2, 2, 2]);
  assert.deepEqual(Array.from(b!.patches).filter((_, k) => k % 3 === 0), [103, 104, 105, 106]);
});

test('a layout with registers last is honoured', () => {
  const data = Float32Array.from([0, 0, 0, 5, 5, 5, 6, 6, 6, 1, 1, 1, 2, 2, 2]);
  const [a] = splitTokens(data, [1, 5, 3], { ...info, tokenLayout: ['cls', 'patches', 'registers'] }, 1, 2);
  assert.deepEqual(Array.from(a!.registers), [1, 1, 1, 2, 2, 2]);
  assert.deepEqual(Array.from(a!.patches), [5, 5, 5, 6, 6, 6]);
});

test('a token count that does not fit the grid is an error, never a reshape', () => {
  assert.throws(() => splitTokens(new Float32Array(2 * 6 * 3), [2, 6, 3], info, 2, 2), /model output is \[2, 6, 3\], expected \[2, 7, 3\]/);
  assert.throws(() => splitTokens(new Float32Array(7 * 4), [1, 7, 4], info, 2, 2), /tokens of 3/);
});
