/**
 * Horizontal flips (--flip, and a per-image plan's flip). The flipped copy of an image is what
 * extracting the mirrored file gives. Under dinofeat's rule the rule applied to the mirrored file
 * picks the same box numbers there, which in this image's coordinates is the box mirrored
 * (copyBoxOf); in a cache made with --crops the trainer's box moves with the pixels (a trainer
 * flips the crop it encodes), so there it is the same box, for fallback rows too. The
 * copy is that box, resized and normalised as usual, then mirrored as a tensor: resizing and
 * normalising commute with a horizontal flip (the filters are symmetric about the pixel centres),
 * so nothing is decoded flipped, and when the copy's box is the box itself (a trainer's box,
 * stretch, or an even margin on both sides) the one resized tensor serves both orientations.
 */
import type { CropBox } from './buckets.js';

/** The box at the same place from the right edge of an image `width` pixels wide. */
export function mirrorBox(box: CropBox, width: number): CropBox {
  return { ...box, x: width - box.x - box.w };
}

/**
 * The upright box whose tensor, mirrored, is the other orientation of `box`: the box mirrored under
 * dinofeat's rule, the box itself in a cache whose boxes a trainer's file (--crops) fixed.
 */
export function copyBoxOf(box: CropBox, width: number, byRule: boolean): CropBox {
  return byRule ? mirrorBox(box, width) : box;
}

/** A [channels, height, width] tensor with each row reversed (a new array). */
export function mirrorPlanes(pixels: Float32Array, height: number, width: number): Float32Array {
  if (pixels.length % (height * width) !== 0) throw new Error(`tensor of ${pixels.length} values is not planes of ${height}x${width}`);
  const out = new Float32Array(pixels.length);
  for (let row = 0; row < pixels.length; row += width) {
    for (let x = 0; x < width; x++) out[row + x] = pixels[row + width - 1 - x]!;
  }
  return out;
}

/** Which orientations of an image the model gets. */
export interface FlipRequest {
  /** The main features are of the mirrored crop (a per-image plan says the trainer flipped it). */
  flip: boolean;
  /** Also the other orientation (--flip), of copyBoxOf's box. */
  copy: boolean;
}

export interface OrientedPixels {
  /** The main view: the crop box, mirrored when `flip`. */
  pixels: Float32Array;
  /** The other orientation, of copyBoxOf's box; only when asked for. */
  mirrored?: Float32Array;
}

/**
 * The tensors for `box`, and for `copyBox` (copyBoxOf) when the copy is wanted; `render` resizes
 * and normalises one upright box to [3, height, width] of the model input.
 */
export async function orientedPixels(
  box: CropBox, copyBox: CropBox, input: { width: number; height: number }, want: FlipRequest,
  render: (box: CropBox) => Promise<Float32Array>,
): Promise<OrientedPixels> {
  const mirror = (t: Float32Array) => mirrorPlanes(t, input.height, input.width);
  const upright = await render(box);
  const pixels = want.flip ? mirror(upright) : upright;
  if (!want.copy) return { pixels };
  const otherUpright = copyBox.x === box.x ? upright : await render(copyBox);
  return { pixels, mirrored: want.flip ? otherUpright : mirror(otherUpright) };
}
