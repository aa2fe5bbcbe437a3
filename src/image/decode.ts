/**
 * Decoding with sharp to upright 8-bit sRGB: EXIF orientation applied, CMYK / grey / palette /
 * 16-bit converted, alpha flattened on a background colour, first frame of animations. The pixel
 * limit is checked from the header, before any pixel is decoded (decompression bombs).
 */
import sharp, { type Metadata } from 'sharp';
import type { CropBox, Size } from './buckets.js';

export type IccMode = 'ignore' | 'convert';

export interface DecodeOptions {
  /** Refuse images with more pixels than this (header check, before decoding). */
  maxPixels: number;
  /** Colour transparent pixels are flattened on, e.g. '#ffffff'. */
  background: string;
  /**
   * 'ignore' matches Hugging Face's pipeline (PIL drops embedded ICC profiles); 'convert'
   * applies the profile to reach sRGB.
   */
  icc: IccMode;
}

export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Upright size (EXIF orientations 5-8 swap width and height), format and orientation. */
export interface ImageHeader extends Size {
  format: string;
  orientation: number;
}

export interface DecodedImage {
  /** HWC RGB, 8 bits per channel. */
  data: Buffer;
  width: number;
  height: number;
}

/** A problem with one image: recorded in the errors log, never stops the run. */
export class ImageError extends Error {
  constructor(
    readonly stage: 'read' | 'decode',
    message: string,
  ) {
    super(message);
  }
}

function reason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();
}

/** Reads only the header: format, upright size, orientation. */
export async function readHeader(bytes: Buffer, opts: Pick<DecodeOptions, 'maxPixels'>): Promise<ImageHeader> {
  if (bytes.length === 0) throw new ImageError('read', 'empty file (0 bytes)');
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageError('decode', `not a readable image: ${reason(e)}`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageError('decode', `no image size in the header (${meta.format ?? 'unknown format'})`);
  // For animations sharp reports the height of all frames stacked; one frame is what we decode.
  const frameHeight = meta.pageHeight ?? height;
  if (width * frameHeight > opts.maxPixels) {
    throw new ImageError('decode', `${width}x${frameHeight} = ${width * frameHeight} pixels is over the limit of ${opts.maxPixels} (--max-pixels); not decoded`);
  }
  const orientation = meta.orientation ?? 1;
  const swap = orientation >= 5 && orientation <= 8;
  return { width: swap ? frameHeight : width, height: swap ? width : frameHeight, format: meta.format ?? 'unknown', orientation };
}

/** Decodes the crop box (upright coordinates) to RGB8. */
export async function decodeRgb(bytes: Buffer, crop: CropBox, upright: Size, opts: DecodeOptions): Promise<DecodedImage> {
  try {
    let img = sharp(bytes, { limitInputPixels: opts.maxPixels, ignoreIcc: opts.icc === 'ignore', failOn: 'error', page: 0, pages: 1 }).autoOrient();
    if (crop.x !== 0 || crop.y !== 0 || crop.w !== upright.width || crop.h !== upright.height) {
      img = img.extract({ left: crop.x, top: crop.y, width: crop.w, height: crop.h });
    }
    const { data, info } = await img.flatten({ background: opts.background }).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw new ImageError('decode', reason(e));
  }
}
