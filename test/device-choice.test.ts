/**
 * --device cuda:N and the local rank: which card reaches ONNX Runtime's session options. No GPU is
 * needed: the options are what onnxruntime-node turns into the provider's device_id.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chooseDevice, sessionDevice, visibleCards } from '../src/model/device-choice.js';
import { sessionOptions } from '../src/model/devices.js';
import { tempDir } from './helpers/temp.js';

/** The execution provider entry a session would be created with, for --device `flag` in `env`. */
function providerEntry(flag: string, env: NodeJS.ProcessEnv, cards?: number) {
  return sessionOptions({ ...sessionDevice(chooseDevice(flag, env, cards)), threads: 1 }).executionProviders;
}

test('--device cuda:N reaches the session as deviceId N, whatever the local rank says', () => {
  assert.deepEqual(providerEntry('cuda:2', { LOCAL_RANK: '5' }, 8), [{ name: 'cuda', deviceId: 2 }]);
  assert.deepEqual(providerEntry('tensorrt:1', {}), [{ name: 'tensorrt', deviceId: 1 }]);
  // No card and no rank: the provider's own default, as before (the plain name).
  assert.deepEqual(providerEntry('cuda', {}), ['cuda']);
  assert.deepEqual(providerEntry('cpu', { LOCAL_RANK: '3' }), ['cpu'], 'the rank means nothing to the CPU');
});

test('eight workers on an eight-card node: each local rank gets its own card', () => {
  const cards = Array.from({ length: 8 }, (_, rank) => chooseDevice('cuda', { LOCAL_RANK: String(rank) }, 8).deviceId);
  assert.deepEqual(cards, [0, 1, 2, 3, 4, 5, 6, 7]);
  // srun sets SLURM_LOCALID; torchrun's LOCAL_RANK wins when both are there.
  assert.equal(chooseDevice('cuda', { SLURM_LOCALID: '6' }, 8).deviceId, 6);
  assert.equal(chooseDevice('cuda', { SLURM_LOCALID: '6', LOCAL_RANK: '2' }, 8).deviceId, 2);
  assert.equal(chooseDevice('cuda', { LOCAL_RANK: '3' }, 8).chosenBy, 'LOCAL_RANK=3 of 8 cards');
  assert.equal(chooseDevice('cuda:3', { LOCAL_RANK: '3' }, 8).chosenBy, undefined, '--device named it');
  // More workers than cards share them in turn; one card bound per task (CUDA_VISIBLE_DEVICES=5) is card 0.
  assert.equal(chooseDevice('cuda', { LOCAL_RANK: '11' }, 8).deviceId, 3);
  assert.equal(chooseDevice('cuda', { LOCAL_RANK: '5', CUDA_VISIBLE_DEVICES: '5' }).deviceId, 0);
  // Card count unknown (no driver list, no CUDA_VISIBLE_DEVICES): the rank is the card.
  assert.equal(chooseDevice('cuda', { LOCAL_RANK: '5' }, undefined).deviceId, 5);
});

test('cards are counted from CUDA_VISIBLE_DEVICES, else the NVIDIA driver\'s list', () => {
  const driver = tempDir();
  for (const bus of ['0000:07:00.0', '0000:0a:00.0', '0000:44:00.0']) fs.mkdirSync(path.join(driver, bus));
  assert.equal(visibleCards({}, driver), 3);
  assert.equal(visibleCards({ CUDA_VISIBLE_DEVICES: '2,3' }, driver), 2);
  assert.equal(visibleCards({ CUDA_VISIBLE_DEVICES: '' }, driver), 3);
  assert.equal(visibleCards({}, path.join(driver, 'absent')), undefined);
});

test('a card where none can be chosen, or a malformed --device, is one line naming the flag', () => {
  assert.throws(() => chooseDevice('webgpu:1', {}), /--device webgpu:1: ONNX Runtime's WebGPU provider cannot pick a card .*use --device webgpu/);
  assert.throws(() => chooseDevice('cpu:0', {}), /--device cpu:0: cpu takes no card index; use --device cpu/);
  assert.throws(() => chooseDevice('cuda:x', {}), /--device cuda:x: expected a provider name/);
  assert.throws(() => chooseDevice('cuda', { LOCAL_RANK: 'two' }), /LOCAL_RANK=two is not a non-negative integer/);
  // webgpu without a card ignores the rank: it has no adapter index to set.
  assert.deepEqual(chooseDevice('webgpu', { LOCAL_RANK: '3' }), { provider: 'webgpu' });
});
