/**
 * Building blocks shared by the DINOv3 and DINOv2 graphs: pre-norm transformer layers with layer
 * scale, attention and the three MLP forms, the patch embedding and the final norm. Weights and
 * linear layers come from ./layers.ts.
 */
import { DataType, type GraphBuilder, i, ints } from '../onnx/builder.js';
import { layerOutput } from '../model/contract.js';
import type { VitSpec } from '../model/hf-config.js';
import { MS_DOMAIN, type WeightContext, activate, contractOutputs, layerNormOf, layerNormOver, linear, linearFrom, weightF32 } from './layers.js';

export interface BuildContext extends WeightContext {
  spec: VitSpec;
  /** Blocks (1-based, ascending, before the last) whose output is also a graph output. */
  layers: readonly number[];
}

/** RoPE tables for com.microsoft RotaryEmbedding: [tokens, head_dim / 2] each, one row per token. */
export interface RopeTables {
  cos: string;
  sin: string;
  /** int64 [1] = 0: token t uses table row t. */
  start: string;
}

/** Names of one layer's tensors, which differ between DINOv3 and DINOv2 checkpoints. */
export interface LayerNames {
  norm1: string;
  q: string;
  k: string;
  v: string;
  o: string;
  ls1: string;
  norm2: string;
  mlp:
    | { kind: 'plain'; up: string; down: string }
    | { kind: 'gated'; gate: string; up: string; down: string }
    /** DINOv2 giant: one [2h, D] input projection, first half gated: down(silu(a) * b). */
    | { kind: 'fused'; gateUp: string; down: string };
  ls2: string;
}

export function layerNorm(c: BuildContext, x: string, prefix: string): string {
  return layerNormOver(c, x, prefix, c.spec.hiddenSize, c.spec.layerNormEps);
}

function mlp(c: BuildContext, m: string, names: LayerNames['mlp']): string {
  const { spec, g } = c;
  const d = spec.hiddenSize;
  const h = spec.intermediateSize;
  const bias = spec.mlpBias;
  const act = spec.mlpActivation;
  switch (names.kind) {
    case 'plain':
      return linear(c, activate(g, linear(c, m, names.up, h, d, bias), act), names.down, d, h, bias);
    case 'gated': {
      const gated = g.op('Mul', [activate(g, linear(c, m, names.gate, h, d, bias), act), linear(c, m, names.up, h, d, bias)]);
      return linear(c, gated, names.down, d, h, bias);
    }
    case 'fused': {
      // Two linears over row halves of the fused weight: no Split node, and each half quantises alone.
      const half = (from: number) =>
        linearFrom(c, m, { name: `${names.gateUp}.weight`, rows: { from, total: 2 * h } }, bias ? { name: `${names.gateUp}.bias`, rows: { from, total: 2 * h } } : undefined, h, d);
      const gated = g.op('Mul', [activate(g, half(0), act), half(h)]);
      return linear(c, gated, names.down, d, h, bias);
    }
  }
}

function rotate(c: BuildContext, x: string, rope: RopeTables | undefined): string {
  if (!rope) return x;
  // Non-interleaved ("rotate half"): dims d and d + head_dim/2 rotate together by angle[d].
  return c.g.op('RotaryEmbedding', [x, rope.start, rope.cos, rope.sin], { interleaved: i(0) }, { domain: MS_DOMAIN });
}

/** One pre-norm layer: x + ls1·attn(norm1(x)), then + ls2·mlp(norm2(·)). */
export function transformerLayer(c: BuildContext, h: string, n: LayerNames, rope?: RopeTables): string {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const a = layerNorm(c, h, n.norm1);
  const q = rotate(c, linear(c, a, n.q, d, d, spec.queryBias), rope);
  const k = rotate(c, linear(c, a, n.k, d, d, spec.keyBias), rope);
  const v = linear(c, a, n.v, d, d, spec.valueBias);
  // scale defaults to 1/sqrt(head_dim); softmax over all tokens, no mask.
  const attn = g.op('MultiHeadAttention', [q, k, v], { num_heads: i(spec.numHeads) }, { domain: MS_DOMAIN });
  const o = linear(c, attn, n.o, d, d, spec.projBias);
  h = g.op('Add', [h, g.op('Mul', [o, weightF32(c, n.ls1, [d])])]);
  const m = mlp(c, layerNorm(c, h, n.norm2), n.mlp);
  return g.op('Add', [h, g.op('Mul', [m, weightF32(c, n.ls2, [d])])]);
}

/**
 * Patch embedding: Conv with kernel = stride = patch (pixels past the last full patch are
 * dropped, as torch does) → [B, Hp·Wp, D] tokens in row-major patch order, and the conv output's
 * shape [B, D, Hp, Wp] from which the graph derives the patch grid.
 */
export function patchEmbed(c: BuildContext, x: string, weight: string, bias: string): { tokens: string; gridShape: string } {
  const { g, spec } = c;
  const p = spec.patchSize;
  const conv = g.op('Conv', [x, weightF32(c, weight, [spec.hiddenSize, 3, p, p]), weightF32(c, bias, [spec.hiddenSize])], {
    kernel_shape: ints([p, p]),
    strides: ints([p, p]),
  });
  const gridShape = g.op('Shape', [conv]);
  const flat = g.op('Reshape', [conv, g.constInt64([0, spec.hiddenSize, -1])]);
  return { tokens: g.op('Transpose', [flat], { perm: ints([0, 2, 1]) }), gridShape };
}

/** Elements [from, to) of a 1-D int64 shape tensor. */
export function shapeSlice(g: GraphBuilder, shape: string, from: number, to: number): string {
  return g.op('Slice', [shape, g.constInt64([from]), g.constInt64([to])]);
}

/** Expands a [1, n, D] prefix token tensor to the batch of `like` ([B, ...]). */
export function expandToBatch(g: GraphBuilder, t: string, like: string): string {
  const batch = shapeSlice(g, g.op('Shape', [like]), 0, 1);
  return g.op('Expand', [t, g.op('Concat', [batch, g.constInt64([1, 1])], { axis: i(0) })]);
}

/**
 * Final LayerNorm over every token and the two contract outputs (pooler = token 0, the CLS); the
 * same norm, with the same weights, over each kept intermediate hidden state (block → value), as
 * Meta's get_intermediate_layers(norm=True) does.
 */
export function finish(c: BuildContext, h: string, normPrefix: string, kept: ReadonlyMap<number, string>): void {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const norm = layerNormOf(c, normPrefix, d, spec.layerNormEps);
  contractOutputs(g, norm(h), d);
  for (const [k, value] of kept) {
    g.rename(norm(value), layerOutput(k));
    g.output(layerOutput(k), DataType.FLOAT, ['batch', 'tokens', d]);
  }
}
