/**
 * The top principal components of a patch-feature matrix [n, d] (n patches, d hidden), for the
 * standard DINO picture: each patch coloured by its first three components. Block subspace
 * iteration on the centred matrix (never forming the d x d covariance, which is 16M entries for
 * ViT-7B), with a few extra vectors for faster convergence and a final Rayleigh-Ritz step so the
 * components come out as eigenvectors in order of variance.
 */

export interface PcaResult {
  k: number;
  /** [k, d] unit vectors, largest variance first. */
  components: Float64Array;
  /** [n, k] projections of the centred rows. */
  scores: Float64Array;
  /** Variance along each component (eigenvalues of the covariance). */
  variances: number[];
  /** Sum of the variances of all d features, to say how much the k components explain. */
  totalVariance: number;
}

/** Deterministic start vectors (the result does not depend on them beyond rounding). */
function startVectors(d: number, m: number): Float64Array {
  const q = new Float64Array(d * m);
  let x = 0x9e3779b9;
  for (let i = 0; i < q.length; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x297a2d39) >>> 0;
    q[i] = x / 2 ** 32 - 0.5;
  }
  return q;
}

/**
 * Orthonormalises the m columns of q ([d, m], column j at q[i*m + j]) in place (Gram-Schmidt,
 * twice for accuracy). A column that falls into the span of the earlier ones (the matrix has
 * rank < m) is replaced by the first unit vector that does not.
 */
function orthonormalise(q: Float64Array, d: number, m: number): void {
  const norm = (j: number) => {
    let s = 0;
    for (let i = 0; i < d; i++) s += q[i * m + j]! ** 2;
    return Math.sqrt(s);
  };
  for (let j = 0; j < m; j++) {
    for (let basis = -1; basis < d; basis++) {
      if (basis >= 0) for (let i = 0; i < d; i++) q[i * m + j] = i === basis ? 1 : 0;
      const before = norm(j);
      for (let pass = 0; pass < 2; pass++) {
        for (let c = 0; c < j; c++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[i * m + j]! * q[i * m + c]!;
          for (let i = 0; i < d; i++) q[i * m + j]! -= dot * q[i * m + c]!;
        }
      }
      const after = norm(j);
      if (before > 0 && after > 1e-8 * before) {
        for (let i = 0; i < d; i++) q[i * m + j]! /= after;
        break;
      }
    }
  }
}

/** u = (X - mean) q: [n, m]. */
function project(x: Float32Array, mean: Float64Array, q: Float64Array, n: number, d: number, m: number): Float64Array {
  const shift = new Float64Array(m);
  for (let i = 0; i < d; i++) for (let j = 0; j < m; j++) shift[j]! += mean[i]! * q[i * m + j]!;
  const u = new Float64Array(n * m);
  for (let r = 0; r < n; r++) {
    const row = r * d;
    for (let i = 0; i < d; i++) {
      const v = x[row + i]!;
      if (v === 0) continue;
      for (let j = 0; j < m; j++) u[r * m + j]! += v * q[i * m + j]!;
    }
    for (let j = 0; j < m; j++) u[r * m + j]! -= shift[j]!;
  }
  return u;
}

/** z = (X - mean)^T u: [d, m]. */
function backProject(x: Float32Array, mean: Float64Array, u: Float64Array, n: number, d: number, m: number): Float64Array {
  const z = new Float64Array(d * m);
  const sums = new Float64Array(m);
  for (let r = 0; r < n; r++) {
    const row = r * d;
    for (let j = 0; j < m; j++) sums[j]! += u[r * m + j]!;
    for (let i = 0; i < d; i++) {
      const v = x[row + i]!;
      if (v === 0) continue;
      for (let j = 0; j < m; j++) z[i * m + j]! += v * u[r * m + j]!;
    }
  }
  for (let i = 0; i < d; i++) for (let j = 0; j < m; j++) z[i * m + j]! -= mean[i]! * sums[j]!;
  return z;
}

/** Eigen-decomposition of a small symmetric matrix (cyclic Jacobi); eigenvalues descending. */
function symmetricEigen(a: Float64Array, m: number): { values: number[]; vectors: Float64Array } {
  const s = Float64Array.from(a);
  const v = new Float64Array(m * m);
  for (let i = 0; i < m; i++) v[i * m + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += s[p * m + q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = s[p * m + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (s[q * m + q]! - s[p * m + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < m; k++) {
          const skp = s[k * m + p]!;
          const skq = s[k * m + q]!;
          s[k * m + p] = c * skp - sn * skq;
          s[k * m + q] = sn * skp + c * skq;
        }
        for (let k = 0; k < m; k++) {
          const spk = s[p * m + k]!;
          const sqk = s[q * m + k]!;
          s[p * m + k] = c * spk - sn * sqk;
          s[q * m + k] = sn * spk + c * sqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = v[k * m + p]!;
          const vkq = v[k * m + q]!;
          v[k * m + p] = c * vkp - sn * vkq;
          v[k * m + q] = sn * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: m }, (_, i) => i).sort((i, j) => s[j * m + j]! - s[i * m + i]!);
  const vectors = new Float64Array(m * m);
  order.forEach((src, dst) => {
    for (let k = 0; k < m; k++) vectors[k * m + dst] = v[k * m + src]!;
  });
  return { values: order.map((i) => s[i * m + i]!), vectors };
}

export function principalComponents(x: Float32Array, n: number, d: number, k = 3, maxIterations = 200): PcaResult {
  if (x.length !== n * d) throw new Error(`matrix has ${x.length} values, not ${n}x${d}`);
  const kk = Math.min(k, d);
  const m = Math.min(d, kk + 4);
  const mean = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mean[i]! += x[r * d + i]! / n;
  let totalVariance = 0;
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) totalVariance += (x[r * d + i]! - mean[i]!) ** 2;
  totalVariance /= Math.max(1, n - 1);

  let q = startVectors(d, m);
  orthonormalise(q, d, m);
  for (let it = 0; it < maxIterations; it++) {
    const next = backProject(x, mean, project(x, mean, q, n, d, m), n, d, m);
    orthonormalise(next, d, m);
    // Converged when the leading k columns stopped turning.
    let drift = 0;
    for (let j = 0; j < kk; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += next[i * m + j]! * q[i * m + j]!;
      drift = Math.max(drift, 1 - Math.abs(dot));
    }
    q = next;
    if (drift < 1e-10) break;
  }

  // Rayleigh-Ritz: the covariance restricted to the subspace, diagonalised.
  const u = project(x, mean, q, n, d, m);
  const small = new Float64Array(m * m);
  for (let r = 0; r < n; r++) for (let a = 0; a < m; a++) for (let b = 0; b < m; b++) small[a * m + b]! += (u[r * m + a]! * u[r * m + b]!) / Math.max(1, n - 1);
  const eig = symmetricEigen(small, m);
  const components = new Float64Array(kk * d);
  const scores = new Float64Array(n * kk);
  for (let c = 0; c < kk; c++) {
    for (let i = 0; i < d; i++) {
      let v = 0;
      for (let j = 0; j < m; j++) v += q[i * m + j]! * eig.vectors[j * m + c]!;
      components[c * d + i] = v;
    }
    for (let r = 0; r < n; r++) {
      let v = 0;
      for (let j = 0; j < m; j++) v += u[r * m + j]! * eig.vectors[j * m + c]!;
      scores[r * kk + c] = v;
    }
    // A component's sign is arbitrary: make its largest projection positive, so pictures are stable.
    let extreme = 0;
    for (let r = 0; r < n; r++) if (Math.abs(scores[r * kk + c]!) > Math.abs(extreme)) extreme = scores[r * kk + c]!;
    if (extreme < 0) {
      for (let i = 0; i < d; i++) components[c * d + i] = -components[c * d + i]!;
      for (let r = 0; r < n; r++) scores[r * kk + c] = -scores[r * kk + c]!;
    }
  }
  return { k: kk, components, scores, variances: eig.values.slice(0, kk).map((v) => Math.max(0, v)), totalVariance };
}

/** Scores to RGB8, [n, 3]: each component min-max scaled to 0..255 (a flat component is mid-grey). */
export function scoresToRgb(pca: Pick<PcaResult, 'k' | 'scores'>, n: number): Uint8Array {
  const rgb = new Uint8Array(n * 3).fill(128);
  for (let c = 0; c < Math.min(3, pca.k); c++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let r = 0; r < n; r++) {
      lo = Math.min(lo, pca.scores[r * pca.k + c]!);
      hi = Math.max(hi, pca.scores[r * pca.k + c]!);
    }
    if (!(hi - lo > 1e-12 * Math.max(1, Math.abs(hi)))) continue;
    for (let r = 0; r < n; r++) rgb[r * 3 + c] = Math.round((255 * (pca.scores[r * pca.k + c]! - lo)) / (hi - lo));
  }
  return rgb;
}
