/**
 * What identifies a model's weights: the checkpoint hash dinofeat convert writes into the metadata
 * (cheap to read, and it covers weights kept in an external .onnx.data file), else the file's own
 * sha256. One rule for the cache fingerprint and the run record, so the two agree on a model.
 */
import { sha256File } from '../core/file-hash.js';
import { METADATA_KEYS, type ModelInfo } from './info.js';
import { readOnnxHeader } from '../onnx/metadata-reader.js';

/** `info`, when the model's metadata was already read, saves reading it again. */
export async function modelWeightsSha256(modelPath: string, info?: Pick<ModelInfo, 'weightsSha256'>): Promise<string> {
  if (info?.weightsSha256) return info.weightsSha256;
  let metadata: Record<string, string> = {};
  try {
    metadata = readOnnxHeader(modelPath).metadata;
  } catch {
    // Not a parseable ONNX file: its bytes are all there is to compare.
  }
  return metadata[METADATA_KEYS.weightsSha256] ?? (await sha256File(modelPath));
}
