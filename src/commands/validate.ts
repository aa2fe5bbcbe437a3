/**
 * `dinofeat validate [cache-dir | shard]`: runs validate (src/validate/validate.ts) and prints its
 * report, as text or JSON. Exit 0 only when every check that ran passed, 1 when one failed, 2 on a
 * usage error.
 */
import { EXIT } from '../core/errors.js';
import { formatChecks } from '../validate/check.js';
import { validate, type ValidateOptions } from '../validate/validate.js';
import { readOptionsFromFlags, type ReadFlagValues } from '../source/read-options.js';

export interface ValidateCommandOptions extends Omit<ValidateOptions, 'read'>, ReadFlagValues {
  json?: boolean;
}

/** Prints the report (text, or JSON with --json) to `out` and returns the exit code. */
export async function runValidate(target: string, o: ValidateCommandOptions, out: Pick<NodeJS.WritableStream, 'write'> = process.stdout): Promise<number> {
  const report = await validate(target, { ...o, read: readOptionsFromFlags(o) });
  out.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatChecks(`dinofeat validate ${target}`, report.checks));
  return report.ok ? EXIT.ok : EXIT.imagesFailed;
}
