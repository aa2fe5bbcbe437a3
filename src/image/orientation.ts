/**
 * EXIF orientation as a mapping of coordinates, so the resampler reads the frame as stored and no
 * rotated copy of it is ever made. Orientations 5-8 swap the axes (upright x runs along stored y);
 * each upright axis may also run backwards along its stored one.
 */
import type { CropBox, Size } from './buckets.js';

export interface AxisMap {
  /** Upright x runs along stored y (orientations 5-8). */
  transposed: boolean;
  /** Upright x runs backwards along its stored axis. */
  flipX: boolean;
  /** Upright y runs backwards along its stored axis. */
  flipY: boolean;
}

/** Upright (x, y) = stored (…) for EXIF 1-8; anything else is taken as 1, as sharp and PIL do. */
export function axisMap(orientation: number): AxisMap {
  switch (orientation) {
    case 2: return { transposed: false, flipX: true, flipY: false };
    case 3: return { transposed: false, flipX: true, flipY: true };
    case 4: return { transposed: false, flipX: false, flipY: true };
    case 5: return { transposed: true, flipX: false, flipY: false };
    case 6: return { transposed: true, flipX: true, flipY: false };
    case 7: return { transposed: true, flipX: true, flipY: true };
    case 8: return { transposed: true, flipX: false, flipY: true };
    default: return { transposed: false, flipX: false, flipY: false };
  }
}

/** The stored pixels an upright crop box covers, in stored coordinates (upright size given). */
export function storedBox(crop: CropBox, upright: Size, map: AxisMap): CropBox {
  const x = map.flipX ? upright.width - crop.x - crop.w : crop.x;
  const y = map.flipY ? upright.height - crop.y - crop.h : crop.y;
  return map.transposed ? { x: y, y: x, w: crop.h, h: crop.w } : { x, y, w: crop.w, h: crop.h };
}
