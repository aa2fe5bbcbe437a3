/**
 * Resize + normalise, as Hugging Face's image processors do it, in a small ONNX graph run by ONNX
 * Runtime: RGB8 [h, w, 3] → float → Resize (bilinear or bicubic, antialiased, half-pixel centres;
 * the same filter torchvision/PIL use, in both directions, which sharp's upscaler is not) → /255 →
 * (x - mean) / std → [1, 3, H, W]. Rescale and normalise are folded into one multiply-add.
 */
import { DataType, GraphBuilder, encodeModel, f, i, ints, s, type Attr } from '../onnx/builder.js';
import type { ModelInfo } from '../model/info.js';

export function buildPreprocessModel(info: Pick<ModelInfo, 'imageMean' | 'imageStd' | 'resample'>): Uint8Array {
  const g = new GraphBuilder('dinofeat-preprocess');
  const rgb = g.input('rgb', DataType.UINT8, ['h', 'w', 3]);
  const size = g.input('size', DataType.INT64, [2]); // [H, W]
  // Resize the full-size image in HWC order (no transpose of the big tensor); only the small
  // result is transposed to CHW.
  const sizes = g.op('Concat', [size, g.constInt64([3])], { axis: i(0) });
  const filter: Record<string, Attr> = info.resample === 'bicubic'
    ? { mode: s('cubic'), cubic_coeff_a: f(-0.5), exclude_outside: i(1) }
    : { mode: s('linear'), exclude_outside: i(1) };
  const resized = g.op('Resize', [g.op('Cast', [rgb], { to: i(DataType.FLOAT) }), '', '', sizes], { ...filter, antialias: i(1), coordinate_transformation_mode: s('half_pixel') });
  const chw = g.op('Unsqueeze', [g.op('Transpose', [resized], { perm: ints([2, 0, 1]) }), g.constInt64([0])]);
  const scale = g.constFloat(info.imageStd.map((sd) => 1 / (255 * sd)), [1, 3, 1, 1]);
  const shift = g.constFloat(info.imageMean.map((m, k) => -m / info.imageStd[k]!), [1, 3, 1, 1]);
  const normalised = g.op('Add', [g.op('Mul', [chw, scale]), shift]);
  g.rename(normalised, 'pixel_values');
  g.output('pixel_values', DataType.FLOAT, [1, 3, 'H', 'W']);
  return encodeModel(g, { opsets: { '': 18 } });
}
