/**
 * libvips keeps one error buffer and one warning queue for the whole process, so when images fail
 * at the same time their messages get mixed up (sharp issue #902): a PNG is reported with another
 * file's "premature end of JPEG image", or with "Unknown error". Every sharp call of the image
 * stage goes through `withOwnErrors`: it runs alongside the others, and when it fails it is run
 * once more alone, with no other libvips work in flight, so the reason recorded is its own.
 */
let shared = 0;
let alone = false;
let aloneWaiting = 0;
let waiters: Array<() => void> = [];

const wait = () => new Promise<void>((resolve) => waiters.push(resolve));

function wake(): void {
  const woken = waiters;
  waiters = [];
  for (const resolve of woken) resolve();
}

async function runShared<T>(fn: () => Promise<T>): Promise<T> {
  // A caller waiting to run alone goes first, so a steady stream of decodes cannot starve it.
  while (alone || aloneWaiting > 0) await wait();
  shared++;
  try {
    return await fn();
  } finally {
    shared--;
    wake();
  }
}

async function runAlone<T>(fn: () => Promise<T>): Promise<T> {
  aloneWaiting++;
  while (alone || shared > 0) await wait();
  aloneWaiting--;
  alone = true;
  try {
    return await fn();
  } finally {
    alone = false;
    wake();
  }
}

/** Runs `attempt` (which must create its own sharp instance); a failure is retried alone and that error thrown. */
export async function withOwnErrors<T>(attempt: () => Promise<T>): Promise<T> {
  try {
    return await runShared(attempt);
  } catch {
    return runAlone(attempt);
  }
}
