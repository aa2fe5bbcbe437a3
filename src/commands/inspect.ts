/**
 * `dinofeat inspect [shard | cache-dir]`: runs inspect (src/inspect/inspect.ts) and prints what it
 * found: the summary, one row, or where the PCA picture went; as text or JSON.
 */
import { EXIT } from '../core/errors.js';
import { inspect, type InspectOptions, type InspectReport } from '../inspect/inspect.js';
import { formatRow } from '../inspect/row-view.js';
import { formatSummary } from '../inspect/summary.js';

export interface InspectCommandOptions extends InspectOptions {
  json?: boolean;
}

function formatPicture(r: InspectReport): string {
  const p = r.pca!;
  const lines = [
    `PCA picture: ${p.file} (${p.width}x${p.height}): ${p.withImage ? 'model input | patch features (PCA 1-3 as RGB) | original with the crop box' : 'patch features (PCA 1-3 as RGB)'}`,
    `  variance explained by PCA 1-3: ${p.explained.map((e) => `${(100 * e).toFixed(1)}%`).join(', ')}`,
  ];
  if (r.imageNotFound) lines.push(`  source image not found at ${r.imageNotFound}: pass --images DIR (the folder extract read) to draw it`);
  for (const w of p.warnings) lines.push(`  warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

/** Prints what inspect found (text, or JSON with --json) to `out`; 0, or a UserError. */
export async function runInspect(target: string, o: InspectCommandOptions, out: Pick<NodeJS.WritableStream, 'write'> = process.stdout): Promise<number> {
  const report = await inspect(target, o);
  if (o.json) {
    out.write(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT.ok;
  }
  if (report.summary) out.write(formatSummary(report.summary));
  if (report.row) out.write(formatRow(report.row));
  if (report.pca) out.write(formatPicture(report));
  return EXIT.ok;
}
