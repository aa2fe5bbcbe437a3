/**
 * The result of one validate check (cache, model, images, recompute, alignment): what it looked
 * at, what is wrong (by kind, each naming the shard / row / image / bucket), and what to do about
 * each kind. Notes are reported but never make a check fail (orphan files, skipped rows).
 */
import { plural } from '../core/text.js';

export type CheckStatus = 'pass' | 'fail' | 'skipped';

export interface Finding {
  /** Short identifier of the problem, e.g. 'checksum', 'non-finite', 'stale-source'. */
  kind: string;
  /** The shard, row ("shard#row key"), image or bucket it concerns. */
  where: string;
  detail: string;
}

export interface CheckResult {
  check: string;
  status: CheckStatus;
  /** What was checked and measured, one line each. */
  summary: string[];
  /** The first findings of each kind (see MAX_FINDINGS_PER_KIND); `counts` has them all. */
  findings: Finding[];
  counts: Record<string, number>;
  /** What to do, per kind of finding. */
  fixes: Record<string, string>;
  notes: string[];
}

/** Enough to act on; a cache with a million stale rows does not need a million lines. */
export const MAX_FINDINGS_PER_KIND = 100;

export class CheckRecorder {
  private readonly findings: Finding[] = [];
  private readonly counts: Record<string, number> = {};
  private readonly fixes: Record<string, string> = {};
  private readonly notes: string[] = [];
  private readonly summary: string[] = [];

  constructor(readonly check: string) {}

  fail(kind: string, where: string, detail: string): void {
    const n = (this.counts[kind] = (this.counts[kind] ?? 0) + 1);
    if (n <= MAX_FINDINGS_PER_KIND) this.findings.push({ kind, where, detail });
  }

  /** The remedy for every finding of `kind` (the first one given wins). */
  fix(kind: string, text: string): void {
    this.fixes[kind] ??= text;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  info(line: string): void {
    this.summary.push(line);
  }

  get failed(): boolean {
    return this.findings.length > 0;
  }

  /** Findings of `kind` so far. */
  count(kind: string): number {
    return this.counts[kind] ?? 0;
  }

  result(): CheckResult {
    const fixes: Record<string, string> = {};
    for (const kind of Object.keys(this.counts)) if (this.fixes[kind]) fixes[kind] = this.fixes[kind];
    return {
      check: this.check,
      status: this.failed ? 'fail' : 'pass',
      summary: this.summary,
      findings: this.findings,
      counts: { ...this.counts },
      fixes,
      notes: this.notes,
    };
  }
}

export function skippedCheck(check: string, reason: string): CheckResult {
  return { check, status: 'skipped', summary: [reason], findings: [], counts: {}, fixes: {}, notes: [] };
}

/** Findings shown per kind in the text report (all of them are in --json). */
const SHOWN_PER_KIND = 10;

/** The human-readable report of all checks. */
export function formatChecks(title: string, checks: readonly CheckResult[]): string {
  const lines = [title];
  for (const c of checks) {
    lines.push(`${c.status.toUpperCase().padEnd(7)} ${c.check}`);
    for (const s of c.summary) lines.push(`        ${s}`);
    for (const [kind, total] of Object.entries(c.counts)) {
      lines.push(`        ${kind}: ${plural(total, 'problem')}`);
      const shown = c.findings.filter((f) => f.kind === kind).slice(0, SHOWN_PER_KIND);
      for (const f of shown) lines.push(`          ${f.where}: ${f.detail}`);
      if (total > shown.length) lines.push(`          ... and ${total - shown.length} more (--json lists the first ${MAX_FINDINGS_PER_KIND})`);
      if (c.fixes[kind]) lines.push(`          fix: ${c.fixes[kind]}`);
    }
    for (const n of c.notes) lines.push(`        note: ${n}`);
  }
  const failed = checks.filter((c) => c.status === 'fail');
  lines.push(failed.length ? `FAILED: ${failed.map((c) => c.check).join(', ')}` : 'OK: every check passed');
  return `${lines.join('\n')}\n`;
}
