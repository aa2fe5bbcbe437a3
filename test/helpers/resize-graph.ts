/**
 * The resize + normalise extract used before src/image/resample.ts, kept as an independent second
 * implementation to test that one against: a small ONNX graph run by ONNX Runtime, RGB8 [h, w, 3]
 * → float → Resize (bilinear or bicubic, antialiased, half-pixel centres) → /255 → (x - mean) /
 * std → [1, 3, H, W], rescale and normalise folded into one multiply-add on the small result.
 */
import { MODEL_INPUT } from '../../src/model/contract.js';
import { DataType, GraphBuilder, encodeModel, f, i, ints, s, type Attr } from '../../src/onnx/builder.js';
import type { ModelInfo } from '../../src/model/info.js';

export type PreprocessInfo = Pick<ModelInfo, 'family' | 'imageMean' | 'imageStd' | 'resample'>;

/**
 * DINOv3's processor rescales to [0, 1] floats before resizing, so its resize result is never
 * rounded. DINOv2's (BitImageProcessor) resizes the 8-bit image, so its result is clamped to
 * 0..255 and rounded (torchvision: clamp, then round half to even); bicubic overshoots at edges,
 * so both steps matter.
 */
function resizesEightBit(info: PreprocessInfo): boolean {
  return info.family === 'dinov2';
}

/** Inputs: `rgb` uint8 [h, w, 3], `size` int64 [H, W]. Output: `pixel_values` float32 [1, 3, H, W]. */
export function buildPreprocessModel(info: PreprocessInfo): Uint8Array {
  const g = new GraphBuilder('dinofeat-preprocess');
  const rgb = g.input('rgb', DataType.UINT8, ['h', 'w', 3]);
  const size = g.input('size', DataType.INT64, [2]);
  // Resize in NHWC order [1, h, w, 3], so the full-size image is never transposed (only the
  // small result is), and because ONNX Runtime's cubic Resize takes only 4-D input whose
  // outermost and innermost scales are 1.
  const nhwc = g.op('Unsqueeze', [g.op('Cast', [rgb], { to: i(DataType.FLOAT) }), g.constInt64([0])]);
  const sizes = g.op('Concat', [g.constInt64([1]), size, g.constInt64([3])], { axis: i(0) });
  // torch's antialiased bicubic is the Keys kernel with a = -0.5 and taps outside the image
  // dropped and renormalised (docs/model-architecture.md §6); its bilinear is the triangle filter.
  const filter: Record<string, Attr> = info.resample === 'bicubic'
    ? { mode: s('cubic'), cubic_coeff_a: f(-0.5), exclude_outside: i(1) }
    : { mode: s('linear'), exclude_outside: i(1) };
  const resized = g.op('Resize', [nhwc, '', '', sizes], { ...filter, antialias: i(1), coordinate_transformation_mode: s('half_pixel') });
  const pixels = resizesEightBit(info)
    ? g.op('Round', [g.op('Clip', [resized, g.constFloat([0], []), g.constFloat([255], [])])])
    : resized;
  const nchw = g.op('Transpose', [pixels], { perm: ints([0, 3, 1, 2]) });
  const scale = g.constFloat(info.imageStd.map((sd) => 1 / (255 * sd)), [1, 3, 1, 1]);
  const shift = g.constFloat(info.imageMean.map((m, k) => -m / info.imageStd[k]!), [1, 3, 1, 1]);
  g.rename(g.op('Add', [g.op('Mul', [nchw, scale]), shift]), MODEL_INPUT);
  g.output(MODEL_INPUT, DataType.FLOAT, [1, 3, 'H', 'W']);
  return encodeModel(g, { opsets: { '': 18 } });
}
