/** Running statistics of vector norms (CLS norms in validate and inspect), in one pass. */

export function l2norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

export interface NormSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  std: number;
}

export class NormStats {
  private n = 0;
  private sum = 0;
  private sumSq = 0;
  private lo = Infinity;
  private hi = -Infinity;

  add(norm: number): void {
    this.n++;
    this.sum += norm;
    this.sumSq += norm * norm;
    this.lo = Math.min(this.lo, norm);
    this.hi = Math.max(this.hi, norm);
  }

  summary(): NormSummary | undefined {
    if (this.n === 0) return undefined;
    const mean = this.sum / this.n;
    return { count: this.n, min: this.lo, max: this.hi, mean, std: Math.sqrt(Math.max(0, this.sumSq / this.n - mean * mean)) };
  }
}

export function formatNorms(s: NormSummary | undefined): string {
  if (!s) return 'no rows';
  const f = (v: number) => v.toPrecision(4);
  return `mean ${f(s.mean)}, std ${f(s.std)}, min ${f(s.min)}, max ${f(s.max)} over ${s.count} rows`;
}
