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
 * pinned one by at most this fraction of its token's L2 norm. For a 64-dim token that bounds the
 * relative L2 change at 8e-4 (1 - cos ≤ 3.2e-7), inside the 1e-6 per-token budget a resampler
 * change must keep, and ~50x above the run-to-run spread of ONNX Runtime kernels and batching.
 */
export const FEATURE_TOLERANCE = 1e-4;
