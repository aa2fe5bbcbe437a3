/**
 * Flag value parsers: each turns the text after a flag into the typed value the commands take,
 * or a usage error naming the flag.
 */
import { InvalidArgumentError } from '@commander-js/extra-typings';

export function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a whole number of at least 1 (got ${value})`);
    return n;
  };
}

/** A whole number of at least 1, or 'auto' (the command sizes it). */
export function positiveIntOrAuto(flag: string) {
  const int = positiveInt(flag);
  return (value: string): number | 'auto' => (value === 'auto' ? 'auto' : int(value));
}

export function nonNegativeInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a whole number of at least 0 (got ${value})`);
    return n;
  };
}

export function positiveNumber(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a number above 0 (got ${value})`);
    return n;
  };
}

/** For repeatable flags: every value given, in order. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A comma-separated list of block numbers, e.g. 4,8,11 (checked against the model at convert). */
export function blockList(flag: string) {
  return (value: string): number[] => {
    const parts = value.split(',').map((p) => Number(p.trim()));
    if (!parts.length || !parts.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new InvalidArgumentError(`${flag} must be block numbers counted from 1, separated by commas, e.g. 4,8,11 (got ${value})`);
    }
    return parts;
  };
}

/** Three numbers for R, G, B separated by commas, e.g. 0.485,0.456,0.406; above 0 when `positive`. */
export function rgbTriple(flag: string, positive: boolean) {
  return (value: string): [number, number, number] => {
    const parts = value.split(',').map((p) => (p.trim() === '' ? NaN : Number(p)));
    if (parts.length !== 3 || !parts.every((n) => Number.isFinite(n) && (!positive || n > 0))) {
      throw new InvalidArgumentError(`${flag} must be three ${positive ? 'numbers above 0' : 'numbers'} for R,G,B, e.g. ${positive ? '0.229,0.224,0.225' : '0.485,0.456,0.406'} (got ${value})`);
    }
    return parts as [number, number, number];
  };
}
