/**
 * The image stage's settings: the buckets, how an image is fitted to its bucket, and how it is
 * decoded. extract builds them from its flags; validate --recompute rebuilds them from the cache's
 * preprocessing record (preprocessing-record.ts).
 */
import type { Bucket, ResizeMode } from './buckets.js';
import type { CropsSource } from './crops-file.js';
import type { DecodeOptions } from './decode.js';

export interface PrepareSettings {
  buckets: readonly Bucket[];
  resize: ResizeMode;
  dinoScale: number;
  decode: DecodeOptions;
  /** Set when a trainer's crops file (--crops) decides buckets and crops instead of the rule. */
  crops?: CropsSource;
  /** --flip: every image also gives its horizontally flipped copy (image/mirror.ts). */
  flipCopies?: boolean;
}
