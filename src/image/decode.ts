/**
 * Decoding with sharp to upright 8-bit sRGB: EXIF orientation applied, CMYK / grey / palette /
 * 16-bit converted, alpha flattened on a background colour, first frame of animations. The pixel
 * limit is checked from the header, before any pixel is decoded (decompression bombs).
 *
 * By default the result equals what Hugging Face users get from PIL (Image.open → exif_transpose →
 * alpha_composite on the background → convert('RGB')), byte for byte; docs/pixel-parity.md lists
 * the measured exceptions (16-bit greyscale, where PIL clips instead of scaling).
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import { UserError } from '../core/errors.js';
import { releaseBuffer } from '../core/release-buffer.js';
import type { CropBox, Size } from './buckets.js';
import { readJpegHeader } from './jpeg-header.js';
import { axisMap, storedBox, type AxisMap } from './orientation.js';
import { withOwnErrors } from './vips-alone.js';

export type IccMode = 'ignore' | 'convert';

/**
 * 'exact' decodes the whole frame, as Hugging Face's PIL path does; 'fast' lets a JPEG much larger
 * than its bucket shrink on load (fastDecodeSize), which changes the pixels slightly.
 */
export type DecodeMode = 'exact' | 'fast';

export interface DecodeOptions {
  /** Refuse images with more pixels than this (header check, before decoding). */
  maxPixels: number;
  /** Colour transparent pixels are flattened on: any colour sharp parses, e.g. '#ffffff'. */
  background: string;
  /**
   * 'ignore' matches Hugging Face's pipeline (PIL drops embedded ICC profiles); 'convert'
   * applies the profile to reach sRGB.
   */
  icc: IccMode;
  /** Absent: 'exact'. */
  mode?: DecodeMode;
}

export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Upright size (EXIF orientations 5-8 swap width and height), format, orientation, colour space. */
export interface ImageHeader extends Size {
  format: string;
  orientation: number;
  /** libvips' name for the stored colour space: 'srgb', 'b-w', 'cmyk', 'rgb16', ... */
  space: string;
  hasAlpha: boolean;
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
    this.name = 'ImageError';
  }
}

function reason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();
}

/** libvips' error is often generic ("libpng read error"); its first real warning says what was wrong. */
function withWarning(message: string, warnings: readonly string[]): string {
  const detail = warnings.map((w) => w.split('\n')[0]!.trim()).find((w) => w && !/^error in tile/.test(w));
  return detail ? `${message} (${detail})` : message;
}

const JPEG_SPACES = { 1: 'b-w', 3: 'srgb', 4: 'cmyk' } as const;

/** Reads only the header: format, upright size, orientation (a plain JPEG's from its markers, jpeg-header.ts). */
export async function readHeader(bytes: Buffer, opts: Pick<DecodeOptions, 'maxPixels'>): Promise<ImageHeader> {
  if (bytes.length === 0) throw new ImageError('read', 'empty file (0 bytes)');
  const jpeg = readJpegHeader(bytes);
  if (jpeg) {
    return headerOf({ width: jpeg.width, height: jpeg.height, format: 'jpeg', orientation: jpeg.orientation, space: JPEG_SPACES[jpeg.components], hasAlpha: false }, opts);
  }
  let meta: Metadata;
  try {
    meta = await withOwnErrors(() => sharp(bytes, { limitInputPixels: false }).metadata());
  } catch (e) {
    throw new ImageError('decode', `not a readable image: ${reason(e)}`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageError('decode', `no image size in the header (${meta.format ?? 'unknown format'})`);
  // For animations sharp reports the height of all frames stacked; one frame is what we decode.
  return headerOf({
    width, height: meta.pageHeight ?? height, format: meta.format ?? 'unknown', orientation: meta.orientation ?? 1,
    space: meta.space ?? 'srgb', hasAlpha: meta.hasAlpha === true,
  }, opts);
}

/** The header of a frame `width` x `height` as stored: the pixel limit checked, the size made upright. */
function headerOf(stored: ImageHeader, opts: Pick<DecodeOptions, 'maxPixels'>): ImageHeader {
  const { width, height, orientation } = stored;
  if (width * height > opts.maxPixels) {
    throw new ImageError('decode', `${width}x${height} = ${width * height} pixels is over the limit of ${opts.maxPixels} (--max-pixels); not decoded`);
  }
  const swap = orientation >= 5 && orientation <= 8;
  return { ...stored, width: swap ? height : width, height: swap ? width : height };
}

/**
 * How a decode is run against the other libvips work of the process (vips-alone.ts): withOwnErrors
 * where this thread sees all of it; `attempt => attempt()` in a worker whose caller guards the job.
 */
export type Guard = <T>(attempt: () => Promise<T>) => Promise<T>;

export type Rgb = readonly [number, number, number];

const backgrounds = new Map<string, Promise<Rgb>>();

/** The background colour as 8-bit RGB; a colour sharp cannot parse is the user's to fix. */
export function resolveBackground(colour: string): Promise<Rgb> {
  let rgb = backgrounds.get(colour);
  if (!rgb) {
    rgb = (async () => {
      try {
        const px = await sharp({ create: { width: 1, height: 1, channels: 3, background: colour } }).raw().toBuffer();
        return [px[0]!, px[1]!, px[2]!] as const;
      } catch {
        throw new UserError(`--background ${colour}: not a colour; use e.g. '#ffffff', 'white' or 'rgb(255,255,255)'`);
      }
    })();
    backgrounds.set(colour, rgb);
  }
  return rgb;
}

/**
 * RGBA → RGB over an opaque background, rounded to nearest as PIL's alpha_composite does
 * (libvips' flatten truncates, one level darker on about half the pixels).
 */
function flattenOn(rgba: Buffer, bg: Rgb): Buffer {
  const pixels = rgba.length / 4;
  const rgb = Buffer.allocUnsafe(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const a = rgba[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.round((rgba[p * 4 + c]! * a + bg[c]! * (255 - a)) / 255);
  }
  return rgb;
}

/**
 * CMYK → RGB without colour management, as PIL's convert('RGB') does it (so as Hugging Face's
 * pipeline sees a CMYK JPEG): each channel is (255 − K)(255 − C)/255, rounded the way PIL rounds.
 * libvips would otherwise apply a CMYK profile even with ignoreIcc (30/255 mean difference).
 */
function uncalibratedCmykToRgb(cmyk: Buffer): Buffer {
  const pixels = cmyk.length / 4;
  const rgb = Buffer.allocUnsafe(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const notK = 255 - cmyk[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = cmyk[p * 4 + c]! * notK + 128;
      rgb[p * 3 + c] = notK - (((t >> 8) + t) >> 8);
    }
  }
  return rgb;
}

/** `rgb`, made from sharp's frame `from`, which is freed now (src/core/release-buffer.ts). */
function converted(from: Buffer, rgb: Buffer): Buffer {
  releaseBuffer(from);
  return rgb;
}

/** Decodes the crop box (upright coordinates) of the first frame to RGB8, upright. */
export function decodeRgb(bytes: Buffer, crop: CropBox, upright: ImageHeader, opts: DecodeOptions): Promise<DecodedImage> {
  return decodeFrame(bytes, upright, opts, (img) => {
    img = img.autoOrient();
    return isWhole(crop, upright) ? img : img.extract({ left: crop.x, top: crop.y, width: crop.w, height: crop.h });
  });
}

/** An RGB8 frame as stored, with how its axes map to upright ones. */
export interface StoredFrame extends DecodedImage {
  axes: AxisMap;
}

/**
 * Decodes the crop box (upright coordinates) of the first frame as it is stored: EXIF orientation
 * is left to the resampler (resample.ts), so no rotated copy of the frame is ever made.
 *
 * `shrunk` (upright size, from fastDecodeSize): the whole frame is decoded at that smaller size.
 */
export function decodeStored(bytes: Buffer, crop: CropBox, upright: ImageHeader, opts: DecodeOptions, shrunk?: Size, guard: Guard = withOwnErrors): Promise<StoredFrame> {
  const axes = axisMap(upright.orientation);
  const box = storedBox(crop, upright, axes);
  const stored = axes.transposed ? { width: upright.height, height: upright.width } : upright;
  return decodeFrame(bytes, upright, opts, (img) => {
    if (shrunk) {
      if (!isWhole(crop, upright)) throw new Error('a shrunk decode takes the whole frame');
      const [width, height] = axes.transposed ? [shrunk.height, shrunk.width] : [shrunk.width, shrunk.height];
      return img.resize(width, height, { fit: 'fill', fastShrinkOnLoad: true });
    }
    return isWhole(box, stored) ? img : img.extract({ left: box.x, top: box.y, width: box.w, height: box.h });
  }, guard).then((frame) => ({ ...frame, axes }));
}

/**
 * --decode fast: the upright size to decode a JPEG's whole frame at, or undefined (other formats,
 * crops, and shrinks too small for it are decoded whole, as in exact mode). libjpeg scales by 1/s
 * inside its inverse DCT; s is the largest of 8, 4, 2 that sharp's own shrink-on-load resize to the
 * bucket would use, i.e. with the shrink at least s + 1 on both sides (sharp halves s when the
 * shrink's integer part equals it). sharp always follows that scaling with a libvips reduce, so it
 * is asked for the least one that keeps s: to 1/(s + 1) of the source (a reduce of 1.125, 1.25 or
 * 1.5 on the scaled frame); the exact filter does the rest. So fast mode decodes as few pixels as
 * sharp's own thumbnail path, and the model's filter does most of the shrinking.
 */
export function fastDecodeSize(upright: ImageHeader, crop: CropBox, out: Size): Size | undefined {
  if (upright.format !== 'jpeg' || !isWhole(crop, upright)) return undefined;
  const shrink = Math.min(upright.width / out.width, upright.height / out.height);
  const scale = [8, 4, 2].find((s) => shrink >= s + 1);
  if (scale === undefined) return undefined;
  return { width: Math.floor(upright.width / (scale + 1)), height: Math.floor(upright.height / (scale + 1)) };
}

function isWhole(box: CropBox, size: Size): boolean {
  return box.x === 0 && box.y === 0 && box.w === size.width && box.h === size.height;
}

/** The first frame through `shape` (orientation, crop, size) to RGB8: colour, alpha and errors handled as PIL would. */
async function decodeFrame(bytes: Buffer, upright: ImageHeader, opts: DecodeOptions, shape: (img: Sharp) => Sharp, guard: Guard = withOwnErrors): Promise<DecodedImage> {
  const background = await resolveBackground(opts.background);
  return guard(async () => {
    const warnings: string[] = [];
    try {
      // failOn 'error' (not sharp's default 'warning'): truncated or corrupt data fails, while the
      // warnings that many real photos raise (extraneous bytes, odd EXIF) do not, as in PIL.
      const source = sharp(bytes, { limitInputPixels: opts.maxPixels, ignoreIcc: opts.icc === 'ignore', failOn: 'error', page: 0, pages: 1 });
      source.on('warning', (w: string) => warnings.push(w));
      const img = shape(source);
      if (opts.icc === 'ignore' && upright.space === 'cmyk' && !upright.hasAlpha) {
        // Keep the stored CMYK values (no profile round trip) and convert them as PIL does.
        const { data, info } = await img.pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
        if (info.channels !== 4) throw new Error(`CMYK image decoded to ${info.channels} channels, expected 4`);
        return { data: converted(data, uncalibratedCmykToRgb(data)), width: info.width, height: info.height };
      }
      const { data, info } = await img.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels === 3) return { data, width: info.width, height: info.height };
      if (info.channels === 4) return { data: converted(data, flattenOn(data, background)), width: info.width, height: info.height };
      throw new Error(`decoded to ${info.channels} channels, expected 3 or 4`);
    } catch (e) {
      throw new ImageError('decode', withWarning(reason(e), warnings));
    }
  });
}
