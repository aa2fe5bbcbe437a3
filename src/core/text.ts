/** Wording for one-line messages, shared by validate's findings and inspect's summary. */

/** A list for one line of text: the first `shown` items, then how many there are. */
export function abbreviate(items: readonly string[], shown = 4, sep = ', '): string {
  return items.length <= shown + 1 ? items.join(sep) : `${items.slice(0, shown).join(sep)}${sep}... (${items.length} in all)`;
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
