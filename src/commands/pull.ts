/**
 * `dinofeat pull <repo-id> [--revision R] [--precision P] [--default]`: downloads a checkpoint from
 * the Hugging Face Hub into the model store, converts it, and makes it the default model when
 * asked (or when there is none yet); store/pull.ts does the work, this prints it.
 */
import { EXIT } from '../core/errors.js';
import type { DownloadProgress } from '../store/hub.js';
import { pullModel, type PullEvents } from '../store/pull.js';
import { describeModel } from '../store/registry.js';
import { byteProgress, type ByteProgress } from './byte-progress.js';
import { conversionOf, type ConversionFlags } from './convert.js';

export interface PullOptions extends ConversionFlags {
  revision?: string;
  /** Make this model the default even when one exists. */
  default?: boolean;
}

/** Pull's progress on stderr: what is fetched, one display per downloaded file, the conversion. */
function pullReporter(): Required<PullEvents> & { stop(): void } {
  let file: string | undefined;
  let download: ByteProgress | undefined;
  const convert = byteProgress('convert');
  return {
    start(repo, known) {
      process.stderr.write(
        known
          ? `dinofeat pull: ${repo}: ${describeModel(known)}\n`
          : `dinofeat pull: ${repo} is not in dinofeat's registry (see dinofeat models); pulling it anyway, conversion needs a DINOv3 or DINOv2 checkpoint\n`,
      );
    },
    download(p: DownloadProgress) {
      if (p.file !== file) {
        download?.stop();
        file = p.file;
        download = byteProgress(`download ${p.file}`, { minBytes: 16 * 2 ** 20 });
      }
      download!.update(p.received, p.total);
    },
    convert(written, total) {
      // The last download display ends before the conversion's begins.
      download?.stop();
      download = undefined;
      convert.update(written, total);
    },
    stop() {
      download?.stop();
      convert.stop();
    },
  };
}

export async function runPull(repoId: string, opts: PullOptions): Promise<number> {
  const reporter = pullReporter();
  const r = await pullModel(repoId, { ...conversionOf(opts), revision: opts.revision, makeDefault: opts.default }, reporter).finally(reporter.stop);
  const out = [`dinofeat pull: ${r.repo} (${r.revision}) ${r.converted ? 'converted to' : 'already at'} ${r.modelPath} (${opts.precision})`, `  checkpoint: ${r.checkpointDir}`];
  if (r.default) {
    out.push(
      r.default.failed
        ? `  could not make it the default model: ${r.default.failed}`
        : `  default model: ${r.default.link} -> ${r.modelPath}; dinofeat extract ./images uses it when no --model is given`,
    );
  }
  out.push(`  use it: dinofeat extract ./images --model ${r.modelPath}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return EXIT.ok;
}
