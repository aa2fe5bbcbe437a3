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
