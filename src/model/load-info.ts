/**
 * ModelInfo for an ONNX file: from dinofeat's metadata_props when present; for a foreign export,
 * from a Hugging Face config.json (+ preprocessor_config.json) beside it or one directory up
 * (the Hub layout onnx/model.onnx), with --patch-size / --num-registers overriding either.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { readModelSpec, specToInfo } from './hf-config.js';
import { readOnnxHeader } from '../onnx/metadata-reader.js';
import { METADATA_KEYS, MODEL_FAMILIES, PRECISIONS, type ModelInfo, type Precision } from './info.js';
import { NORM_PRESETS } from './normalisation.js';

export interface InfoOverrides {
  patchSize?: number;
  registers?: number;
}

const layoutFor = (numRegisters: number): string[] => (numRegisters > 0 ? ['cls', 'registers', 'patches'] : ['cls', 'patches']);

function fromMetadata(meta: Record<string, string>, file: string): ModelInfo | undefined {
  if (meta[METADATA_KEYS.patchSize] === undefined) return undefined;
  const bad = (key: string): never => {
    throw new UserError(`${file}: metadata ${key}=${JSON.stringify(meta[key])} is invalid; reconvert the model with dinofeat convert`);
  };
  const int = (key: string) => {
    const v = Number(meta[key]);
    return Number.isInteger(v) && v >= 0 ? v : bad(key);
  };
  const triple = (key: string): [number, number, number] => {
    let v: unknown;
    try {
      v = JSON.parse(meta[key] ?? '');
    } catch {
      return bad(key);
    }
    return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number') ? (v as [number, number, number]) : bad(key);
  };
  const layers = (key: string): number[] => {
    const v = meta[key]!.split(',').map(Number);
    return v.every((k, n) => Number.isInteger(k) && k >= 1 && (n === 0 || k > v[n - 1]!)) ? v : bad(key);
  };
  const precision = meta[METADATA_KEYS.precision] as Precision;
  const numRegisters = int(METADATA_KEYS.numRegisters);
  return {
    family: MODEL_FAMILIES.find((f) => f === meta[METADATA_KEYS.family]) ?? 'dinov3',
    patchSize: int(METADATA_KEYS.patchSize),
    numRegisters,
    hiddenSize: int(METADATA_KEYS.hiddenSize),
    tokenLayout: meta[METADATA_KEYS.tokenLayout]?.split(',') ?? layoutFor(numRegisters),
    imageMean: triple(METADATA_KEYS.imageMean),
    imageStd: triple(METADATA_KEYS.imageStd),
    resample: meta[METADATA_KEYS.resample] === 'bicubic' ? 'bicubic' : 'bilinear',
    precision: PRECISIONS.includes(precision) ? precision : 'fp32',
    ...(meta[METADATA_KEYS.sourceRepo] ? { sourceRepo: meta[METADATA_KEYS.sourceRepo] } : {}),
    ...(meta[METADATA_KEYS.weightsSha256] ? { weightsSha256: meta[METADATA_KEYS.weightsSha256] } : {}),
    ...(meta[METADATA_KEYS.layers] !== undefined ? { layers: layers(METADATA_KEYS.layers) } : {}),
  };
}

/** A foreign export's precision is unknown; fp32 is what Hugging Face's onnx/model.onnx holds. */
function fromConfigBeside(file: string): ModelInfo | undefined {
  const here = path.dirname(path.resolve(file));
  for (const dir of [here, path.dirname(here)]) {
    if (fs.existsSync(path.join(dir, 'config.json'))) return specToInfo(readModelSpec(dir), 'fp32');
  }
  return undefined;
}

export function loadModelInfo(onnxPath: string, overrides: InfoOverrides = {}): ModelInfo {
  if (!fs.existsSync(onnxPath)) throw new UserError(`model ${onnxPath} not found: pass an .onnx file (dinofeat convert / pull make one)`);
  let meta: Record<string, string>;
  try {
    meta = readOnnxHeader(onnxPath).metadata;
  } catch {
    throw new UserError(`${onnxPath} is not an ONNX model (cannot parse it); convert a checkpoint with dinofeat convert`);
  }
  const found = fromMetadata(meta, onnxPath) ?? fromConfigBeside(onnxPath);
  if (!found && (overrides.patchSize === undefined || overrides.registers === undefined)) {
    throw new UserError(`${onnxPath} has no dinofeat metadata and no config.json beside it: pass --patch-size and --num-registers (and note mean/std default to ImageNet's)`);
  }
  const base: ModelInfo = found ?? {
    family: 'dinov3',
    patchSize: overrides.patchSize!,
    numRegisters: overrides.registers!,
    hiddenSize: 0, // learnt from a test run by probeModel (./probe.ts)
    tokenLayout: layoutFor(overrides.registers!),
    imageMean: [...NORM_PRESETS.imagenet.mean],
    imageStd: [...NORM_PRESETS.imagenet.std],
    resample: 'bilinear',
    precision: 'fp32',
  };
  const numRegisters = overrides.registers ?? base.numRegisters;
  return {
    ...base,
    patchSize: overrides.patchSize ?? base.patchSize,
    numRegisters,
    tokenLayout: numRegisters === base.numRegisters ? base.tokenLayout : layoutFor(numRegisters),
  };
}
