/**
 * Every image of a run's inputs, in order: the directories walked, then the lists read. Extract
 * reads them; validate and merge read them again to compare a cache with them.
 */
import { readList } from './list.js';
import type { SourceItem } from './types.js';
import { walkDirectory } from './walk.js';

export interface Inputs {
  /** Directories, walked recursively; keys are paths relative to the directory. */
  dirs: readonly string[];
  /** Files with one image path per line ('-' for stdin); keys are the paths as written. */
  lists: readonly string[];
}

export async function* readInputs(inputs: Inputs): AsyncGenerator<SourceItem> {
  for (const dir of inputs.dirs) yield* walkDirectory(dir);
  for (const list of inputs.lists) yield* readList(list);
}

/** The inputs as extract's arguments: `dir1 dir2 --list a.txt`. */
/** The key of every image the inputs hold (what a run over them should end up storing or failing). */
export async function* inputKeys(inputs: Inputs): AsyncGenerator<string> {
  for await (const item of readInputs(inputs)) if ('image' in item) yield item.image.key;
}

export function inputArgs(inputs: Inputs): string {
  return [...inputs.dirs, ...inputs.lists.map((l) => `--list ${l}`)].join(' ');
}

/** Where the images of `keys` are, for those the inputs hold (the first source wins, as in extract). */
export async function locateKeys(inputs: Inputs, keys: ReadonlySet<string>): Promise<Map<string, string | Buffer>> {
  const found = new Map<string, string | Buffer>();
  for await (const item of readInputs(inputs)) {
    if ('image' in item && keys.has(item.image.key) && !found.has(item.image.key)) found.set(item.image.key, item.image.path);
    if (found.size === keys.size) break;
  }
  return found;
}
