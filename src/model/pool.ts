/**
 * Average pooling of the patch grid (--pool N): each N×N block of patches becomes one token, for a
 * DiT whose token grid is N times coarser than DINO's. Done on the model's float32 output, before
 * the stored dtype rounds it, so a pooled cache equals the mean of an unpooled float32 one.
 */

/** Patches [gridH*gridW, hidden] row-major → [(gridH/n)*(gridW/n), hidden]; the grid must divide by n. */
export function poolPatches(patches: Float32Array, gridH: number, gridW: number, hidden: number, n: number): Float32Array {
  if (n === 1) return patches;
  if (gridH % n !== 0 || gridW % n !== 0) throw new Error(`grid ${gridH}x${gridW} does not divide into ${n}x${n} blocks`);
  const outH = gridH / n;
  const outW = gridW / n;
  const out = new Float32Array(outH * outW * hidden);
  const sum = new Float64Array(hidden);
  for (let i = 0; i < outH; i++) {
    for (let j = 0; j < outW; j++) {
      sum.fill(0);
      for (let di = 0; di < n; di++) {
        for (let dj = 0; dj < n; dj++) {
          const from = ((i * n + di) * gridW + (j * n + dj)) * hidden;
          for (let k = 0; k < hidden; k++) sum[k]! += patches[from + k]!;
        }
      }
      const to = (i * outW + j) * hidden;
      for (let k = 0; k < hidden; k++) out[to + k] = sum[k]! / (n * n);
    }
  }
  return out;
}
