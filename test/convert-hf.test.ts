/**
 * Configurations the golden data does not show, checked against Hugging Face's own forward
 * (transformers, run here by test/hf-reference.py on seeded random checkpoints it saves with
 * save_pretrained): DINOv3 without query/value bias (as ViT-7B), gated MLPs, ViT-S and other widths, depths,
 * head sizes and patch sizes, no registers, non-square inputs in both orientations, batch 3;
 * DINOv2 and DINOv2-with-registers at the native 518x518, at 224x224 and non-square sizes, and
 * the giant's SwiGLU (weights_in / weights_out).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import ort from '../src/model/ort.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { assertClose, hfOutputs, hfReference, runModel, type HfModelJob } from './fixtures/reference-outputs.js';

const DINOV2_SIZES: [number, number, number][] = [
  [1, 518, 518], // native 37x37 grid: the table is used as is
  [1, 224, 224],
  [1, 224, 308], // 16x22
  [1, 308, 224], // 22x16
  [2, 98, 140],
  [1, 230, 250], // not multiples of 14: the conv drops the remainder
];

const MODELS: HfModelJob[] = [
  {
    name: 'dinov3-7b-like',
    class: 'DINOv3ViTModel',
    config: {
      hidden_size: 64, num_attention_heads: 2, num_hidden_layers: 2, intermediate_size: 96, num_register_tokens: 4,
      use_gated_mlp: true, hidden_act: 'silu', query_bias: false, value_bias: false,
    },
    seed: 11,
    inputs: [[1, 96, 160], [1, 160, 96], [3, 64, 80]],
  },
  {
    name: 'dinov3-no-registers-no-bias',
    class: 'DINOv3ViTModel',
    config: {
      hidden_size: 96, num_attention_heads: 3, num_hidden_layers: 3, intermediate_size: 192, num_register_tokens: 0,
      key_bias: true, proj_bias: false, mlp_bias: false, layer_norm_eps: 1e-6, rope_theta: 1000.0,
    },
    seed: 12,
    inputs: [[1, 70, 100], [2, 48, 48]],
  },
  {
    name: 'dinov3-gated-gelu-patch8',
    class: 'DINOv3ViTModel',
    config: {
      hidden_size: 48, num_attention_heads: 3, num_hidden_layers: 2, intermediate_size: 64, num_register_tokens: 2,
      use_gated_mlp: true, hidden_act: 'gelu', patch_size: 8,
    },
    seed: 13,
    inputs: [[1, 40, 72]],
  },
  {
    // ViT-S/16 widths (head_dim 64, 16 RoPE frequencies per axis), two layers to stay fast.
    name: 'dinov3-vits16-width',
    class: 'DINOv3ViTModel',
    config: { hidden_size: 384, num_attention_heads: 6, num_hidden_layers: 2, intermediate_size: 1536, num_register_tokens: 4 },
    seed: 14,
    inputs: [[1, 224, 224], [1, 128, 320]],
  },
  {
    name: 'dinov2',
    class: 'Dinov2Model',
    config: { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, patch_size: 14, image_size: 518 },
    seed: 21,
    inputs: DINOV2_SIZES,
  },
  {
    name: 'dinov2-registers',
    class: 'Dinov2WithRegistersModel',
    config: { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, patch_size: 14, image_size: 518, num_register_tokens: 4 },
    seed: 22,
    inputs: DINOV2_SIZES,
  },
  {
    name: 'dinov2-giant-like',
    class: 'Dinov2Model',
    config: { hidden_size: 48, num_attention_heads: 4, num_hidden_layers: 2, patch_size: 14, image_size: 112, use_swiglu_ffn: true },
    seed: 23,
    inputs: [[1, 112, 112], [1, 84, 140], [1, 140, 84]],
  },
  {
    name: 'dinov2-registers-giant-like',
    class: 'Dinov2WithRegistersModel',
    config: { hidden_size: 48, num_attention_heads: 4, num_hidden_layers: 2, patch_size: 14, image_size: 112, use_swiglu_ffn: true, num_register_tokens: 4 },
    seed: 24,
    inputs: [[1, 112, 112], [1, 84, 140]],
  },
];

let reference: string;
before(async () => {
  reference = await hfReference(MODELS);
});

for (const m of MODELS) {
  test(`${m.name} (${m.class}) matches Hugging Face within 1e-4 at ${m.inputs.map((s) => s.join('x')).join(', ')} (BxHxW)`, async (t) => {
    const out = path.join(reference, `${m.name}.onnx`);
    const { info } = await convertCheckpoint(path.join(reference, m.name), out, { precision: 'fp32' });
    const session = await ort.InferenceSession.create(out);
    for (const input of m.inputs) {
      const ref = hfOutputs(reference, m.name, input);
      const got = await runModel(session, ref.pixels, ref.dims);
      const [b, h, w] = input;
      const p = info.patchSize;
      assert.deepEqual(got.dims, [b, 1 + info.numRegisters + Math.floor(h / p) * Math.floor(w / p), info.hiddenSize]);
      const d = assertClose(`${m.name} ${b}x${h}x${w}`, got, ref, info.hiddenSize);
      t.diagnostic(`${b}x${h}x${w}: max abs diff ${d.toExponential(2)}`);
    }
  });
}
