/**
 * config.json (+ preprocessor_config.json) of a Hugging Face DINOv3 (ViT or ConvNeXt) / DINOv2
 * checkpoint, parsed and checked once into the spec the graph builders use. Values the forward
 * pass depends on come from here; values that only matter in training (layerscale_value,
 * layer_scale_init_value, pos_embed_rescale, drop_path) are ignored (docs/model-architecture.md
 * §2-4, §6, §8).
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import type { ModelFamily, ModelInfo, Precision, Resample } from './info.js';
import { NORM_PRESETS, type Rgb } from './normalisation.js';

/** MLP activation; 'gelu' is the exact erf form (Hugging Face "gelu"). */
export type Activation = 'gelu' | 'silu';

export interface VitSpec {
  family: Exclude<ModelFamily, 'dinov3-convnext'>;
  /** model_type as written in config.json. */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  /** Width of the MLP's hidden layer (each half of a gated MLP). */
  intermediateSize: number;
  patchSize: number;
  numRegisters: number;
  layerNormEps: number;
  /** gated: down(act(gate(x)) * up(x)); plain: down(act(up(x))). */
  gatedMlp: boolean;
  mlpActivation: Activation;
  queryBias: boolean;
  keyBias: boolean;
  valueBias: boolean;
  /** Bias on the attention output projection. */
  projBias: boolean;
  mlpBias: boolean;
  /** DINOv3: RoPE base (0 for DINOv2). */
  ropeTheta: number;
  /** DINOv2 with registers resizes its position table with antialias (Hugging Face does). */
  posAntialias: boolean;
  imageMean: Rgb;
  imageStd: Rgb;
  resample: Resample;
}

/**
 * DINOv3 ConvNeXt: a 4x4/4 stem, then per stage (after the first) a 2x2/2 downsampling; each
 * stage's blocks keep its width. The last stage's positions are the "patches" of a stride of
 * 4 * 2^(stages - 1) pixels (32 for the released four-stage models).
 */
export interface ConvNextSpec {
  family: 'dinov3-convnext';
  modelType: string;
  /** Channels of each stage. */
  hiddenSizes: number[];
  /** Blocks in each stage. */
  depths: number[];
  layerNormEps: number;
  mlpActivation: Activation;
  imageMean: Rgb;
  imageStd: Rgb;
  resample: Resample;
}

export type ModelSpec = VitSpec | ConvNextSpec;

/** Pixels per final-stage position: the stem's 4, doubled by each later stage's downsampling. */
export function convNextStride(spec: Pick<ConvNextSpec, 'hiddenSizes'>): number {
  return 4 * 2 ** (spec.hiddenSizes.length - 1);
}

type Json = Record<string, unknown>;

function readJson(file: string): Json {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`${file} not found: a checkpoint directory needs config.json (download it with the weights)`);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
  } catch {
    // reported below
  }
  throw new UserError(`${file} is not a JSON object; download it again`);
}

/** Reads typed fields of one JSON file, naming the file and field in every error. */
class Fields {
  constructor(
    private readonly cfg: Json,
    private readonly file: string,
  ) {}

  private fail(key: string, want: string): never {
    throw new UserError(`${this.file}: "${key}" must be ${want} (got ${JSON.stringify(this.cfg[key])})`);
  }

  number(key: string, fallback?: number): number {
    const v = this.cfg[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number');
    return v;
  }

  int(key: string, min: number, fallback?: number): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.cfg[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  /** patch_size may be written as 16 or [16, 16]; only square patches exist in these models. */
  patchSize(): number {
    const v = this.cfg.patch_size;
    const sides = Array.isArray(v) ? v : [v];
    if (sides.length < 1 || sides.length > 2 || !sides.every((s) => s === sides[0] && Number.isInteger(s) && (s as number) > 0)) {
      this.fail('patch_size', 'a positive integer (square patches)');
    }
    return sides[0] as number;
  }

  /** A non-empty list of integers >= min. */
  ints(key: string, min: number): number[] {
    const v = this.cfg[key];
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => Number.isInteger(x) && (x as number) >= min)) this.fail(key, `a non-empty list of integers >= ${min}`);
    return v as number[];
  }

  triple(key: string, fallback: Rgb): Rgb {
    const v = this.cfg[key];
    if (v === undefined) return fallback;
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) this.fail(key, 'a list of 3 numbers');
    return v as [number, number, number];
  }
}

/** PIL resample codes used by Hugging Face image processors. */
const PIL_RESAMPLE: Record<number, Resample> = { 2: 'bilinear', 3: 'bicubic' };

function activation(name: unknown, file: string): Activation {
  if (name === 'gelu') return 'gelu';
  if (name === 'silu' || name === 'swish') return 'silu';
  throw new UserError(`${file}: hidden_act ${JSON.stringify(name)} is not supported; dinofeat builds "gelu" (exact) and "silu" MLPs`);
}

function familyOf(modelType: string, file: string): ModelFamily {
  if (modelType === 'dinov3_vit') return 'dinov3';
  if (modelType === 'dinov3_convnext') return 'dinov3-convnext';
  if (modelType === 'dinov2' || modelType === 'dinov2_with_registers') return 'dinov2';
  throw new UserError(`${file}: model_type "${modelType}" is not supported; dinofeat converts dinov3_vit, dinov3_convnext, dinov2 and dinov2_with_registers checkpoints`);
}

function readPreprocessing(dir: string, family: ModelFamily): Pick<VitSpec, 'imageMean' | 'imageStd' | 'resample'> {
  const file = path.join(dir, 'preprocessor_config.json');
  // Without the file, the processors' defaults: ImageNet statistics; DINOv3 (both backbones share
  // its processor) bilinear, DINOv2 bicubic.
  const pre = new Fields(fs.existsSync(file) ? readJson(file) : {}, file);
  const code = pre.int('resample', 0, family === 'dinov2' ? 3 : 2);
  const resample = PIL_RESAMPLE[code];
  if (!resample) throw new UserError(`${file}: resample ${code} is not supported; dinofeat resizes with 2 (bilinear) or 3 (bicubic)`);
  const { mean, std } = NORM_PRESETS.imagenet;
  return { imageMean: pre.triple('image_mean', mean), imageStd: pre.triple('image_std', std), resample };
}

function readConvNextSpec(dir: string, cfg: Json, c: Fields, file: string): ConvNextSpec {
  if (c.int('num_channels', 1, 3) !== 3) throw new UserError(`${file}: num_channels must be 3 (RGB models only)`);
  // Hugging Face's defaults are the tiny model's.
  const hiddenSizes = cfg.hidden_sizes === undefined ? [96, 192, 384, 768] : c.ints('hidden_sizes', 1);
  const depths = cfg.depths === undefined ? [3, 3, 9, 3] : c.ints('depths', 0);
  if (depths.length !== hiddenSizes.length) {
    throw new UserError(`${file}: depths has ${depths.length} stages but hidden_sizes has ${hiddenSizes.length}; they must list the same stages`);
  }
  return {
    family: 'dinov3-convnext',
    modelType: String(cfg.model_type),
    hiddenSizes,
    depths,
    layerNormEps: c.number('layer_norm_eps', 1e-6),
    mlpActivation: activation(cfg.hidden_act ?? 'gelu', file),
    ...readPreprocessing(dir, 'dinov3-convnext'),
  };
}

/** The checkpoint's spec: a ViT's (DINOv3, DINOv2) or a ConvNeXt's, told apart by model_type. */
export function readModelSpec(dir: string): ModelSpec {
  const file = path.join(dir, 'config.json');
  const cfg = readJson(file);
  const modelType = String(cfg.model_type ?? '');
  const family = familyOf(modelType, file);
  const c = new Fields(cfg, file);
  if (family === 'dinov3-convnext') return readConvNextSpec(dir, cfg, c, file);

  const hiddenSize = c.int('hidden_size', 1);
  const numHeads = c.int('num_attention_heads', 1);
  if (hiddenSize % numHeads !== 0) throw new UserError(`${file}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const headDim = hiddenSize / numHeads;
  if (c.int('num_channels', 1, 3) !== 3) throw new UserError(`${file}: num_channels must be 3 (RGB models only)`);
  const common = {
    family,
    modelType,
    hiddenSize,
    numLayers: c.int('num_hidden_layers', 1),
    numHeads,
    headDim,
    patchSize: c.patchSize(),
    numRegisters: c.int('num_register_tokens', 0, 0),
    ...readPreprocessing(dir, family),
  };

  if (family === 'dinov3') {
    // RoPE splits each head into 4 equal parts (y/x, cos/sin pairs).
    if (headDim % 4 !== 0) throw new UserError(`${file}: head size ${headDim} (hidden_size / num_attention_heads) must be a multiple of 4 for RoPE`);
    return {
      ...common,
      intermediateSize: c.int('intermediate_size', 1),
      layerNormEps: c.number('layer_norm_eps', 1e-5),
      gatedMlp: c.bool('use_gated_mlp', false),
      mlpActivation: activation(cfg.hidden_act ?? 'gelu', file),
      queryBias: c.bool('query_bias', true),
      keyBias: c.bool('key_bias', false),
      valueBias: c.bool('value_bias', true),
      projBias: c.bool('proj_bias', true),
      mlpBias: c.bool('mlp_bias', true),
      ropeTheta: c.number('rope_theta', 100),
      posAntialias: false,
    };
  }

  // DINOv2 stores no intermediate size: fc1 is int(hidden * mlp_ratio) wide; the SwiGLU variant
  // (giant) keeps two thirds of that, rounded up to a multiple of 8, as Meta's SwiGLU layer sizes it.
  const swiglu = c.bool('use_swiglu_ffn', false);
  const plainWidth = Math.floor(hiddenSize * c.number('mlp_ratio', 4));
  const qkvBias = c.bool('qkv_bias', true);
  return {
    ...common,
    intermediateSize: swiglu ? Math.ceil(Math.floor((plainWidth * 2) / 3) / 8) * 8 : plainWidth,
    layerNormEps: c.number('layer_norm_eps', 1e-6),
    gatedMlp: swiglu,
    // The SwiGLU MLP always uses SiLU; the plain one follows hidden_act.
    mlpActivation: swiglu ? 'silu' : activation(cfg.hidden_act ?? 'gelu', file),
    queryBias: qkvBias,
    keyBias: qkvBias,
    valueBias: qkvBias,
    projBias: true,
    mlpBias: true,
    ropeTheta: 0,
    posAntialias: modelType === 'dinov2_with_registers',
  };
}

/**
 * The metadata a converted model carries (ModelInfo) for this spec. A ConvNeXt's "patch" is its
 * total stride and its "CLS" the pooled token: the same contract as a ViT without registers.
 */
export function specToInfo(spec: ModelSpec, precision: Precision, extra: Pick<ModelInfo, 'sourceRepo' | 'weightsSha256' | 'layers'> = {}): ModelInfo {
  const vit = spec.family !== 'dinov3-convnext';
  const numRegisters = vit ? spec.numRegisters : 0;
  return {
    family: spec.family,
    patchSize: vit ? spec.patchSize : convNextStride(spec),
    numRegisters,
    hiddenSize: vit ? spec.hiddenSize : spec.hiddenSizes.at(-1)!,
    tokenLayout: numRegisters > 0 ? ['cls', 'registers', 'patches'] : ['cls', 'patches'],
    imageMean: spec.imageMean,
    imageStd: spec.imageStd,
    resample: spec.resample,
    precision,
    ...(extra.sourceRepo ? { sourceRepo: extra.sourceRepo } : {}),
    ...(extra.weightsSha256 ? { weightsSha256: extra.weightsSha256 } : {}),
    ...(extra.layers?.length ? { layers: extra.layers } : {}),
  };
}
