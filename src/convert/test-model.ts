/**
 * A deterministic DINOv3-shaped checkpoint with random weights, in Hugging Face's layout, made
 * from a seeded PRNG: for the demo, the tests and benchmarks. It is NOT a trained model; its
 * features only reflect image content through random filters. config.json and a README say so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { convertCheckpoint, type ConvertResult } from './convert.js';
import { writeSafetensors, type StDtype } from './safetensors.js';

export interface TestModelSpec {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  patchSize: number;
  numRegisters: number;
  gated: boolean;
  queryBias: boolean;
  valueBias: boolean;
  seed: number;
}

export const TINY_TEST_MODEL: TestModelSpec = {
  hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 256, patchSize: 16, numRegisters: 4,
  gated: false, queryBias: true, valueBias: true, seed: 1,
};

/** The released ViT-S/16 shapes (hidden 384, 12 layers, 6 heads, MLP 1536): 211 tensors, 21,596,544 parameters. */
export const VITS16_SHAPED: TestModelSpec = {
  hiddenSize: 384, numLayers: 12, numHeads: 6, intermediateSize: 1536, patchSize: 16, numRegisters: 4,
  gated: false, queryBias: true, valueBias: true, seed: 2,
};

export const NOT_A_REAL_MODEL = 'random weights made by dinofeat for tests and demos - NOT a real model';

/** Uniform numbers in [0, 1) from mulberry32: small, fast, and the same on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function normal(rand: () => number, n: number, std: number, mean = 0): Float32Array {
  const out = new Float32Array(n);
  for (let k = 0; k < n; k += 2) {
    // Box-Muller: two normals from two uniforms.
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    out[k] = mean + std * r * Math.cos(t);
    if (k + 1 < n) out[k + 1] = mean + std * r * Math.sin(t);
  }
  return out;
}

export function uniform(rand: () => number, n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

export function testCheckpointTensors(spec: TestModelSpec): Record<string, { shape: number[]; data: Float32Array }> {
  const rand = seededRandom(spec.seed);
  const d = spec.hiddenSize;
  const inter = spec.intermediateSize;
  const p = spec.patchSize;
  const t: Record<string, { shape: number[]; data: Float32Array }> = {};
  const add = (name: string, shape: number[], data: Float32Array) => (t[name] = { shape, data });
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const linear = (name: string, out: number, inn: number, bias: boolean) => {
    add(`${name}.weight`, [out, inn], normal(rand, out * inn, 1 / Math.sqrt(inn)));
    if (bias) add(`${name}.bias`, [out], normal(rand, out, 0.02));
  };
  const norm = (name: string) => {
    add(`${name}.weight`, [d], normal(rand, d, 0.1, 1));
    add(`${name}.bias`, [d], normal(rand, d, 0.05));
  };
  add('embeddings.cls_token', [1, 1, d], normal(rand, d, 0.5));
  add('embeddings.mask_token', [1, 1, d], normal(rand, d, 0.02));
  if (spec.numRegisters > 0) add('embeddings.register_tokens', [1, spec.numRegisters, d], normal(rand, spec.numRegisters * d, 0.5));
  const pe = [d, 3, p, p];
  add('embeddings.patch_embeddings.weight', pe, normal(rand, size(pe), 1 / Math.sqrt(3 * p * p)));
  add('embeddings.patch_embeddings.bias', [d], normal(rand, d, 0.02));
  for (let l = 0; l < spec.numLayers; l++) {
    const n = `layer.${l}`;
    norm(`${n}.norm1`);
    linear(`${n}.attention.q_proj`, d, d, spec.queryBias);
    linear(`${n}.attention.k_proj`, d, d, false);
    linear(`${n}.attention.v_proj`, d, d, spec.valueBias);
    linear(`${n}.attention.o_proj`, d, d, true);
    add(`${n}.layer_scale1.lambda1`, [d], uniform(rand, d, 0.1, 0.5));
    norm(`${n}.norm2`);
    if (spec.gated) linear(`${n}.mlp.gate_proj`, inter, d, true);
    linear(`${n}.mlp.up_proj`, inter, d, true);
    linear(`${n}.mlp.down_proj`, d, inter, true);
    add(`${n}.layer_scale2.lambda1`, [d], uniform(rand, d, 0.1, 0.5));
  }
  norm('norm');
  return t;
}

export function parameterCount(spec: TestModelSpec): number {
  // mask_token is stored but unused at inference; Hugging Face's parameter count includes it.
  return Object.values(testCheckpointTensors(spec)).reduce((a, x) => a + x.data.length, 0);
}

export async function writeTestCheckpoint(dir: string, spec: TestModelSpec, dtype: StDtype = 'F32'): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    _dinofeat_note: NOT_A_REAL_MODEL,
    architectures: ['DINOv3ViTModel'],
    model_type: 'dinov3_vit',
    hidden_size: spec.hiddenSize,
    intermediate_size: spec.intermediateSize,
    num_hidden_layers: spec.numLayers,
    num_attention_heads: spec.numHeads,
    num_register_tokens: spec.numRegisters,
    patch_size: spec.patchSize,
    num_channels: 3,
    image_size: 224,
    hidden_act: spec.gated ? 'silu' : 'gelu',
    use_gated_mlp: spec.gated,
    query_bias: spec.queryBias,
    key_bias: false,
    value_bias: spec.valueBias,
    proj_bias: true,
    mlp_bias: true,
    layer_norm_eps: 1e-5,
    layerscale_value: 1.0,
    rope_theta: 100.0,
    pos_embed_shift: null,
    pos_embed_jitter: null,
    pos_embed_rescale: 2.0,
    attention_dropout: 0.0,
    drop_path_rate: 0.0,
    initializer_range: 0.02,
    torch_dtype: 'float32',
  };
  const preprocessor = {
    image_processor_type: 'DINOv3ViTImageProcessorFast',
    do_resize: true, size: { height: 224, width: 224 }, resample: 2,
    do_rescale: true, rescale_factor: 1 / 255,
    do_normalize: true, image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225],
  };
  // Python's config classes check float fields strictly: write 100.0, not 100.
  const floats = ['layer_norm_eps', 'layerscale_value', 'rope_theta', 'pos_embed_rescale', 'attention_dropout', 'drop_path_rate', 'initializer_range'];
  const json = JSON.stringify(config, null, 2).replace(/"(\w+)": (-?\d+)(,?)$/gm, (m, k: string, v: string, c: string) => (floats.includes(k) ? `"${k}": ${v}.0${c}` : m));
  fs.writeFileSync(path.join(dir, 'config.json'), `${json}\n`);
  fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'README.md'), `# dinofeat test model\n\n${NOT_A_REAL_MODEL}.\nSeed ${spec.seed}; shapes as in a DINOv3 ViT (hidden ${spec.hiddenSize}, ${spec.numLayers} layers).\n`);
  const tensors = Object.fromEntries(Object.entries(testCheckpointTensors(spec)).map(([k, v]) => [k, { ...v, dtype }]));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt', note: NOT_A_REAL_MODEL });
}

export type TestModelSize = 'tiny' | 'vits16';

/**
 * `dinofeat test-model`: the test checkpoint of one size in <dir>/checkpoint and its fp32
 * conversion in <dir>/model.onnx.
 */
export async function makeTestModel(dir: string, size: TestModelSize): Promise<{ checkpointDir: string; converted: ConvertResult }> {
  const checkpointDir = path.join(dir, 'checkpoint');
  await writeTestCheckpoint(checkpointDir, size === 'vits16' ? VITS16_SHAPED : TINY_TEST_MODEL);
  const converted = await convertCheckpoint(checkpointDir, path.join(dir, 'model.onnx'), { precision: 'fp32', sourceRepo: `dinofeat/test-${size} (random weights, not a real model)` });
  return { checkpointDir, converted };
}
