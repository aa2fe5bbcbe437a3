/** dinofeat's own version, read once from package.json (it goes into every shard's metadata). */
import fs from 'node:fs';

const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export const DINOFEAT_VERSION: string = pkg.version;
