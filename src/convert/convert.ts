/**
 * Hugging Face checkpoint directory (config.json + safetensors) → ONNX model that follows the
 * contract: input pixel_values [batch, 3, height, width], outputs last_hidden_state and
 * pooler_output, and metadata_props describing the model for everything downstream.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { infoToMetadata, type ModelFamily, type ModelInfo, type Precision } from '../model/info.js';
import { GraphBuilder } from '../onnx/builder.js';
import { chunkSize } from '../onnx/protobuf.js';
import { writeModel } from '../onnx/writer.js';
import { DINOFEAT_VERSION } from '../core/version.js';
import { type ModelSpec, readModelSpec, specToInfo } from '../model/hf-config.js';
import type { Normalisation } from '../model/normalisation.js';
import { buildConvNext } from './convnext-graph.js';
import { buildDinov2 } from './dinov2-graph.js';
import { buildDinov3 } from './dinov3-graph.js';
import { MS_DOMAIN, type WeightContext } from './layers.js';
import { openCheckpoint } from './safetensors.js';

export interface ConvertOptions {
  precision: Precision;
  /** Blocks (1-based) whose normed hidden state is an extra output; the last block is last_hidden_state already. */
  layers?: readonly number[];
  /** Replaces the checkpoint's preprocessor mean and/or std (e.g. a preset of model/normalisation.ts). */
  normalisation?: Partial<Normalisation>;
  /** Hugging Face repo id, recorded in the metadata when known. */
  sourceRepo?: string;
  /** Bytes written so far and the total, for a progress bar. */
  onProgress?: (written: number, total: number) => void;
}

export interface ConvertResult {
  info: ModelInfo;
  modelPath: string;
  dataPath?: string;
  bytes: number;
  seconds: number;
}

/**
 * --layers names transformer blocks: a ConvNeXt's stages are another kind of intermediate output
 * (other widths and grids), left out of scope. Checked by family so pull can refuse a known
 * ConvNeXt before downloading it.
 */
export function assertLayersSupported(family: ModelFamily, requested: readonly number[] | undefined): void {
  if (family === 'dinov3-convnext' && requested?.length) {
    throw new UserError(`--layers ${requested.join(',')}: intermediate layers are for ViT checkpoints; a DINOv3 ConvNeXt's stages are not supported, convert it without --layers`);
  }
}

/** The requested blocks as the graph outputs them: ascending, once each, without the last block. */
export function intermediateLayers(requested: readonly number[], spec: ModelSpec): number[] {
  assertLayersSupported(spec.family, requested);
  if (spec.family === 'dinov3-convnext') return [];
  const outside = requested.filter((k) => !Number.isInteger(k) || k < 1 || k > spec.numLayers);
  if (outside.length) throw new UserError(`--layers ${outside.join(',')}: the checkpoint has blocks 1 to ${spec.numLayers}`);
  return [...new Set(requested)].filter((k) => k < spec.numLayers).sort((a, b) => a - b);
}

/** The family's graph into `w.g`; the ViTs also output the `layers` kept. */
function buildGraph(w: WeightContext, spec: ModelSpec, layers: readonly number[]): void {
  switch (spec.family) {
    case 'dinov3': return buildDinov3({ ...w, spec, layers });
    case 'dinov2': return buildDinov2({ ...w, spec, layers });
    case 'dinov3-convnext': return buildConvNext({ ...w, spec });
  }
}

export async function convertCheckpoint(dir: string, outPath: string, opts: ConvertOptions): Promise<ConvertResult> {
  const started = performance.now();
  const read = readModelSpec(dir);
  const spec: ModelSpec = { ...read, imageMean: opts.normalisation?.mean ?? read.imageMean, imageStd: opts.normalisation?.std ?? read.imageStd };
  const layers = intermediateLayers(opts.layers ?? [], spec);
  const ckpt = openCheckpoint(dir);
  try {
    // Build first: it checks every tensor's name and shape, so a wrong checkpoint fails before
    // the (for large checkpoints, long) hashing and writing.
    const g = new GraphBuilder(`${spec.modelType}-${opts.precision}`);
    buildGraph({ g, ckpt, precision: opts.precision }, spec, layers);

    const outDir = path.dirname(path.resolve(outPath));
    try {
      fs.mkdirSync(outDir, { recursive: true });
      fs.accessSync(outDir, fs.constants.W_OK);
    } catch {
      throw new UserError(`cannot write to ${outDir}: choose a writable --out path`);
    }
    const info = specToInfo(spec, opts.precision, { sourceRepo: opts.sourceRepo, weightsSha256: await ckpt.sha256(), layers });
    const total = g.initializers.reduce((a, t) => a + chunkSize(t.data), 0);
    let written = 0;
    const result = await writeModel(g, outPath, {
      opsets: { '': 18, [MS_DOMAIN]: 1 },
      metadata: infoToMetadata(info),
      producerVersion: DINOFEAT_VERSION,
      docString: `Converted by dinofeat ${DINOFEAT_VERSION} from ${opts.sourceRepo ?? path.basename(path.resolve(dir))}`,
      onBytes: (n) => {
        written += n;
        opts.onProgress?.(Math.min(written, total), total);
      },
    });
    return { info, modelPath: result.modelPath, dataPath: result.dataPath, bytes: result.bytes, seconds: (performance.now() - started) / 1000 };
  } finally {
    ckpt.close();
  }
}
