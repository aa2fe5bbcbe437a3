/**
 * File names are bytes on Linux. A name that is not valid UTF-8 keeps its bytes for opening the
 * file, and gets a key with each invalid byte written as %XX (and '%' itself as %25 only in that
 * case), so keys stay valid strings in Parquet, JSON and Python.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeName(raw: Buffer): { text: string; valid: boolean } {
  try {
    return { text: strictUtf8.decode(raw), valid: true };
  } catch {
    let out = '';
    let at = 0;
    while (at < raw.length) {
      // Take the longest valid UTF-8 sequence starting here (1 to 4 bytes), else escape one byte.
      let taken = false;
      for (let len = 1; len <= 4 && at + len <= raw.length; len++) {
        try {
          const ch = strictUtf8.decode(raw.subarray(at, at + len));
          out += ch === '%' ? '%25' : ch;
          at += len;
          taken = true;
          break;
        } catch {
          /* try a longer sequence */
        }
      }
      if (!taken) out += `%${raw[at++]!.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    return { text: out, valid: false };
  }
}
