/**
 * What a shard format contributes to a shard writer: a header, row groups, a footer, all written
 * through the writer's hashing output. Its own module so the formats and the writer that picks
 * one do not import each other.
 */
import type { EncodedRow } from './schema.js';

export interface ShardEncoder {
  start(): Promise<void>;
  writeGroup(rows: readonly EncodedRow[]): Promise<void>;
  finish(): Promise<void>;
}
