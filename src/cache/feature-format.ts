/**
 * The feature format: which numbers dinofeat stores for a given image, model and preprocessing.
 * Its version is part of every cache's fingerprint in place of dinofeat's package version, so a
 * release that computes the same features keeps every cache usable.
 *
 * Bump FEATURE_FORMAT_VERSION by hand, and only, when dinofeat's output for the same input (same
 * image bytes, weights, preprocessing flags and stored dtype) moves by more than FEATURE_TOLERANCE:
 * a new resampler, decoder or normalisation that changes pixels, another token split, another
 * rounding of stored values. test/feature-format.test.ts pins the test model's stored values on
 * fixed images and fails on such a change; repinning refuses values beyond the tolerance until the
 * version is bumped. Caches of an older version are then refused with one line (identity.ts).
 */

/**
 * 1: the first versioned format. Caches made before it have no `featureFormat` in cache.json;
 * their fingerprint also hashed dinofeat's package version, so they are extracted again.
 */
export const FEATURE_FORMAT_VERSION = 1;

/**
 * Outputs within this tolerance are the same feature format: every stored value differs from the
 * pinned one by at most this fraction of its token's L2 norm (for a 64-value token moved that far
 * in every value: a relative change of 8e-4, 1 - cos ≤ 3.2e-7). Measured on the pin (tiny model,
 * float32): batch size 1 and one thread change nothing (bit-identical); the changes a release must
 * not make silently move it far more: 8-bit rounding of the resized pixels 3.3e-4, bicubic for
 * bilinear 3.9e-3, a half-pixel shift 1.2e-2, cover for stretch 1.9e-2. Float32 kernels on another
 * CPU differ by rounding, ~1e-6 of a token's norm, far inside it.
 */
export const FEATURE_TOLERANCE = 1e-4;
