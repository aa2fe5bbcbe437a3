/**
 * The signals that ask a run to stop, whether delivered to this process or relayed by the launcher
 * (core/launcher.ts). A terminal's Ctrl-C (or a batch system's SIGTERM to every process of a job)
 * reaches both the launcher and its child, and the launcher relays what it gets: a relayed signal
 * and the same one delivered directly, within PAIR_MS of each other, are one request. Two relayed
 * ones, or two direct ones, are two (a second Ctrl-C still means "leave now").
 */

export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';
export const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** A relay comes within milliseconds of its direct twin; a person pressing Ctrl-C twice is slower. */
const PAIR_MS = 1000;

type Handler = (signal: StopSignal) => void;

const handlers = new Set<{ signals: ReadonlySet<StopSignal>; handle: Handler }>();
/** The last signal acted on, until its twin (the other way of arriving) has come. */
let last: { signal: StopSignal; relayed: boolean; at: number; paired: boolean } | undefined;

function arrive(signal: StopSignal, relayed: boolean): void {
  const now = Date.now();
  if (last && !last.paired && last.signal === signal && last.relayed !== relayed && now - last.at < PAIR_MS) {
    last.paired = true;
    return;
  }
  last = { signal, relayed, at: now, paired: false };
  const listening = [...handlers].filter((h) => h.signals.has(signal));
  // Nobody listens (only a relay gets here): the signal's default action, as if it had come directly.
  if (!listening.length) process.kill(process.pid, signal);
  for (const h of listening) h.handle(signal);
}

const onDirect = (signal: NodeJS.Signals) => arrive(signal as StopSignal, false);

/**
 * Calls `handle` for each stop request by one of `signals`; returns how to stop listening. While
 * nothing listens for a signal it keeps its default action.
 */
export function onStopSignal(signals: readonly StopSignal[], handle: Handler): () => void {
  const entry = { signals: new Set(signals), handle };
  handlers.add(entry);
  for (const s of signals) if (!process.listeners(s).includes(onDirect)) process.on(s, onDirect);
  return () => {
    handlers.delete(entry);
    for (const s of signals) if (![...handlers].some((h) => h.signals.has(s))) process.off(s, onDirect);
  };
}

/** A signal the launcher received and passed on. */
export function relayedSignal(signal: StopSignal): void {
  arrive(signal, true);
}
