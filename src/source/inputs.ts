/** Every image of a run's inputs, in order: the directories walked, then the lists read. */
import { readList } from './list.js';
import type { SourceItem } from './types.js';
import { walkDirectory } from './walk.js';

export interface Inputs {
  /** Directories, walked recursively. */
  dirs: readonly string[];
  /** Files with one image path per line ('-' for stdin). */
  lists: readonly string[];
}

export async function* readInputs(inputs: Inputs): AsyncGenerator<SourceItem> {
  for (const dir of inputs.dirs) yield* walkDirectory(dir);
  for (const list of inputs.lists) yield* readList(list);
}
