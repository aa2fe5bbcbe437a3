/**
 * Pixel normalisation constants a model can be converted with. By default a conversion takes them
 * from the checkpoint's preprocessor_config.json (Hugging Face parity); `--norm <preset>` or
 * `--image-mean/--image-std` replace them, for checkpoints whose processor config does not carry
 * the constants they were trained with.
 */
import { UserError } from '../core/errors.js';

export type Rgb = readonly [number, number, number];

export interface Normalisation {
  mean: Rgb;
  std: Rgb;
}

/**
 * imagenet: the ImageNet statistics, what the DINOv3 web-image (LVD-1689M) and DINOv2 checkpoints
 * use and what their processor configs say. sat493m: the statistics Meta's DINOv3 README gives
 * for the satellite (SAT-493M) ViTs, dinov3-vitl16/vit7b16-pretrain-sat493m.
 */
export const NORM_PRESETS = {
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  sat493m: { mean: [0.43, 0.411, 0.296], std: [0.213, 0.156, 0.143] },
} as const satisfies Record<string, Normalisation>;

export type NormPreset = keyof typeof NORM_PRESETS;
export const NORM_PRESET_NAMES = Object.keys(NORM_PRESETS) as NormPreset[];

/** What a conversion was asked for: a preset, or either constant given; nothing keeps the checkpoint's. */
export interface NormalisationRequest {
  norm?: NormPreset;
  imageMean?: Rgb;
  imageStd?: Rgb;
}

/** The overrides a request makes (none, one or both constants); a preset and explicit constants together are refused. */
export function normalisationOverride(r: NormalisationRequest): Partial<Normalisation> {
  if (r.norm && (r.imageMean || r.imageStd)) {
    throw new UserError(`--norm ${r.norm} and --image-mean/--image-std both set the normalisation: pass one of them`);
  }
  if (r.norm) return NORM_PRESETS[r.norm];
  return { ...(r.imageMean ? { mean: r.imageMean } : {}), ...(r.imageStd ? { std: r.imageStd } : {}) };
}

/** The preset these constants are, if any (for names of converted files and messages). */
export function presetOf(n: Normalisation): NormPreset | undefined {
  const same = (a: Rgb, b: Rgb) => a.every((v, k) => v === b[k]);
  return NORM_PRESET_NAMES.find((name) => same(NORM_PRESETS[name].mean, n.mean) && same(NORM_PRESETS[name].std, n.std));
}
