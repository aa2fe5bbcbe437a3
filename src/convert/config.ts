/**
 * config.json (+ preprocessor_config.json) of a Hugging Face DINOv3 / DINOv2 checkpoint, parsed
 * into the one spec the graph builders use. Values the forward pass depends on come from here;
 * values that only matter in training (layerscale_value, pos_embed_rescale, drop_path) are ignored.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { ModelFamily, Resample } from '../model/info.js';

export interface VitSpec {
  family: ModelFamily;
  /** model_type as written in config.json. */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  patchSize: number;
  numRegisters: number;
  layerNormEps: number;
  gatedMlp: boolean;
  queryBias: boolean;
  keyBias: boolean;
  valueBias: boolean;
  /** DINOv3: RoPE base. */
  ropeTheta: number;
  /** DINOv2: side of the learned position grid (image_size / patch_size, 37 for 518). */
  posGrid: number;
  /** DINOv2 with registers interpolates its position table with antialias. */
  posAntialias: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  resample: Resample;
}

type Json = Record<string, unknown>;

function readJson(file: string): Json {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new UserError(missing ? `${file} not found: a checkpoint directory needs config.json` : `${file} is not valid JSON; download it again`);
  }
}

function num(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`${file}: "${key}" must be a number (got ${JSON.stringify(cfg[key])})`);
  return v;
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

function triple(v: unknown, fallback: [number, number, number]): [number, number, number] {
  return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number') ? (v as [number, number, number]) : fallback;
}

export function readVitSpec(dir: string): VitSpec {
  const file = path.join(dir, 'config.json');
  const cfg = readJson(file);
  const modelType = String(cfg.model_type ?? '');
  const family: ModelFamily | undefined = modelType === 'dinov3_vit' ? 'dinov3' : modelType === 'dinov2' || modelType === 'dinov2_with_registers' ? 'dinov2' : undefined;
  if (!family) throw new UserError(`${file}: model_type "${modelType}" is not supported; dinofeat converts dinov3_vit, dinov2 and dinov2_with_registers checkpoints`);

  const hiddenSize = num(cfg, 'hidden_size', file);
  const numHeads = num(cfg, 'num_attention_heads', file);
  if (hiddenSize % numHeads !== 0) throw new UserError(`${file}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const patchSize = num(cfg, 'patch_size', file);
  const pre = fs.existsSync(path.join(dir, 'preprocessor_config.json')) ? readJson(path.join(dir, 'preprocessor_config.json')) : {};
  const mlpRatio = num(cfg, 'mlp_ratio', file, 4);
  const gated = family === 'dinov3' ? cfg.use_gated_mlp === true : cfg.use_swiglu_ffn === true;
  // DINOv2 stores no intermediate size: fc1 is hidden*mlp_ratio wide; SwiGLU's hidden width is
  // int(hidden*mlp_ratio*2/3) rounded up to a multiple of 8 (ARCH_FACTS §6).
  const intermediateSize = family === 'dinov3'
    ? num(cfg, 'intermediate_size', file)
    : gated ? Math.ceil(Math.floor((hiddenSize * mlpRatio * 2) / 3) / 8) * 8 : hiddenSize * mlpRatio;
  return {
    family,
    modelType,
    hiddenSize,
    numLayers: num(cfg, 'num_hidden_layers', file),
    numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize,
    patchSize,
    numRegisters: num(cfg, 'num_register_tokens', file, 0),
    layerNormEps: num(cfg, 'layer_norm_eps', file, family === 'dinov3' ? 1e-5 : 1e-6),
    gatedMlp: gated,
    queryBias: family === 'dinov3' ? cfg.query_bias !== false : cfg.qkv_bias !== false,
    keyBias: family === 'dinov3' ? cfg.key_bias === true : cfg.qkv_bias !== false,
    valueBias: family === 'dinov3' ? cfg.value_bias !== false : cfg.qkv_bias !== false,
    ropeTheta: family === 'dinov3' ? num(cfg, 'rope_theta', file, 100) : 0,
    posGrid: family === 'dinov2' ? Math.floor(num(cfg, 'image_size', file, 518) / patchSize) : 0,
    posAntialias: modelType === 'dinov2_with_registers',
    imageMean: triple(pre.image_mean, IMAGENET_MEAN),
    imageStd: triple(pre.image_std, IMAGENET_STD),
    resample: (pre.resample ?? (family === 'dinov2' ? 3 : 2)) === 3 ? 'bicubic' : 'bilinear',
  };
}
