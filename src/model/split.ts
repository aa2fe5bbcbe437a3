/**
 * Splits last_hidden_state (and each intermediate layer's output) into CLS, registers and patches
 * by the model's token layout (from its metadata), checking the token count on every batch: a
 * mismatch means the model or the grid is not what we think, and reshaping anyway would silently
 * scramble the cache.
 */
import { layerOutput, MODEL_OUTPUT } from './contract.js';
import type { ModelInfo } from './info.js';
import type { WireTensor } from './ort-worker.js';

export interface TokenGroups {
  cls: Float32Array;
  registers: Float32Array;
  patches: Float32Array;
}

export class TokenLayoutError extends Error {}

export function splitTokens(
  hidden: Float32Array,
  dims: readonly number[],
  info: Pick<ModelInfo, 'numRegisters' | 'hiddenSize' | 'tokenLayout'>,
  gridH: number,
  gridW: number,
): TokenGroups[] {
  const [batch, tokens, width] = dims as [number, number, number];
  const sizes: Record<string, number> = { cls: 1, registers: info.numRegisters, patches: gridH * gridW };
  const expected = info.tokenLayout.reduce((a, g) => a + (sizes[g] ?? NaN), 0);
  if (dims.length !== 3 || width !== info.hiddenSize || tokens !== expected) {
    throw new TokenLayoutError(
      `model output is [${dims.join(', ')}], expected [${batch}, ${expected}, ${info.hiddenSize}] ` +
        `(${info.tokenLayout.join(' + ')} = 1 + ${info.numRegisters} + ${gridH}x${gridW} tokens of ${info.hiddenSize})`,
    );
  }
  const out: TokenGroups[] = [];
  for (let b = 0; b < batch; b++) {
    const groups: Partial<TokenGroups> = {};
    let token = b * tokens;
    for (const g of info.tokenLayout) {
      const n = sizes[g]!;
      // Views, not copies: rows are encoded as soon as they reach the shard writer, so the batch
      // buffer they keep alive is short-lived.
      groups[g as keyof TokenGroups] = hidden.subarray(token * width, (token + n) * width);
      token += n;
    }
    out.push({ cls: groups.cls!, registers: groups.registers ?? new Float32Array(0), patches: groups.patches! });
  }
  return out;
}

/** One intermediate layer's CLS and patches for one image (its registers are not kept). */
export interface LayerTokens {
  /** Block number, 1-based. */
  layer: number;
  cls: Float32Array;
  patches: Float32Array;
}

export interface ImageTokens extends TokenGroups {
  /** In the order of the model's layers; empty when it has none. */
  layers: LayerTokens[];
}

/** Every token output of a batch (contract.ts#tokenOutputs), split per image. */
export function splitOutputs(
  out: Readonly<Record<string, WireTensor>>,
  info: Pick<ModelInfo, 'numRegisters' | 'hiddenSize' | 'tokenLayout' | 'layers'>,
  gridH: number,
  gridW: number,
): ImageTokens[] {
  const split = (name: string) => {
    const t = out[name];
    if (!t) throw new TokenLayoutError(`model output ${name} is missing`);
    return splitTokens(t.data as Float32Array, t.dims, info, gridH, gridW);
  };
  const last = split(MODEL_OUTPUT);
  const layers = (info.layers ?? []).map((k) => ({ k, groups: split(layerOutput(k)) }));
  return last.map((g, b) => ({ ...g, layers: layers.map(({ k, groups }) => ({ layer: k, cls: groups[b]!.cls, patches: groups[b]!.patches })) }));
}
