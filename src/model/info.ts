/**
 * What a model is, as everything downstream needs to know it: patch size for bucketing, token
 * layout for splitting, mean/std for normalising. Read from the ONNX file's metadata_props (written
 * by `dinofeat convert`), or from a config.json beside a foreign export, or from flags; never from
 * constants in the code.
 */
export type Precision = 'fp32' | 'fp16' | 'int8' | 'int4';
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8', 'int4'];

/** DINOv3 ViTs, DINOv3 ConvNeXts, DINOv2 ViTs (with or without registers); stored as is in the metadata. */
export const MODEL_FAMILIES = ['dinov3', 'dinov3-convnext', 'dinov2'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];
export type Resample = 'bilinear' | 'bicubic';

export interface ModelInfo {
  family: ModelFamily;
  /** Input pixels per output position: a ViT's patch, a ConvNeXt's total stride (32). */
  patchSize: number;
  numRegisters: number;
  hiddenSize: number;
  /** Order of token groups in last_hidden_state, e.g. ['cls', 'registers', 'patches']. */
  tokenLayout: readonly string[];
  imageMean: readonly [number, number, number];
  imageStd: readonly [number, number, number];
  /** Resize filter of the checkpoint's image processor (DINOv3: bilinear, DINOv2: bicubic). */
  resample: Resample;
  precision: Precision;
  /** Hugging Face repo id when known, e.g. facebook/dinov3-vits16-pretrain-lvd1689m. */
  sourceRepo?: string;
  /** sha256 over the checkpoint's safetensors bytes, when converted by dinofeat. */
  weightsSha256?: string;
  /**
   * Blocks (1-based, ascending, never the last) whose hidden state the model also outputs, through
   * the final norm (contract.ts#layerOutput); absent when it outputs only the last.
   */
  layers?: readonly number[];
}

/** Keys under which ModelInfo is stored in ONNX metadata_props (all values are strings). */
export const METADATA_KEYS = {
  family: 'dinofeat.model_family',
  patchSize: 'dinofeat.patch_size',
  numRegisters: 'dinofeat.num_register_tokens',
  hiddenSize: 'dinofeat.hidden_size',
  tokenLayout: 'dinofeat.token_layout',
  imageMean: 'dinofeat.image_mean',
  imageStd: 'dinofeat.image_std',
  resample: 'dinofeat.resample',
  precision: 'dinofeat.precision',
  sourceRepo: 'dinofeat.source_repo',
  weightsSha256: 'dinofeat.weights_sha256',
  layers: 'dinofeat.layers',
} as const;

export function infoToMetadata(info: ModelInfo): Record<string, string> {
  const out: Record<string, string> = {
    [METADATA_KEYS.family]: info.family,
    [METADATA_KEYS.patchSize]: String(info.patchSize),
    [METADATA_KEYS.numRegisters]: String(info.numRegisters),
    [METADATA_KEYS.hiddenSize]: String(info.hiddenSize),
    [METADATA_KEYS.tokenLayout]: info.tokenLayout.join(','),
    [METADATA_KEYS.imageMean]: JSON.stringify(info.imageMean),
    [METADATA_KEYS.imageStd]: JSON.stringify(info.imageStd),
    [METADATA_KEYS.resample]: info.resample,
    [METADATA_KEYS.precision]: info.precision,
  };
  if (info.sourceRepo) out[METADATA_KEYS.sourceRepo] = info.sourceRepo;
  if (info.weightsSha256) out[METADATA_KEYS.weightsSha256] = info.weightsSha256;
  if (info.layers?.length) out[METADATA_KEYS.layers] = info.layers.join(',');
  return out;
}
