/**
 * Building blocks shared by the DINOv3 and DINOv2 graphs: pre-norm transformer layers with layer
 * scale, linear layers whose weight encoding depends on the precision, attention and both MLPs.
 * Weights are lazy: each is read from the checkpoint only while the ONNX file is written, after
 * its name and shape were checked against the checkpoint's header here.
 */
import { DataType, GraphBuilder, f, i, ints, typedBytes } from '../onnx/builder.js';
import type { LazyBytes } from '../onnx/protobuf.js';
import type { Precision } from '../model/info.js';
import { UserError } from '../core/errors.js';
import type { Checkpoint } from './safetensors.js';
import { MODEL_INPUT, MODEL_OUTPUT, MODEL_POOLER, layerOutput } from '../model/contract.js';
import type { VitSpec } from '../model/hf-config.js';
import { float32ToFloat16 } from '../core/half.js';
import { INT4_BLOCK, type Int4Weights, quantizeInt4Blocks, quantizeInt8PerColumn } from './quantize.js';

export const MS_DOMAIN = 'com.microsoft';

export interface BuildContext {
  g: GraphBuilder;
  ckpt: Checkpoint;
  spec: VitSpec;
  precision: Precision;
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

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, k) => v === b[k]);

/** Checks a tensor's presence and shape now, so a wrong checkpoint fails before anything is written. */
export function requireTensor(c: BuildContext, name: string, shape: readonly number[]): void {
  const t = c.ckpt.info(name);
  if (!sameShape(t.shape, shape)) {
    throw new UserError(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${shape}] from config.json; the checkpoint does not match its config`);
  }
}

function lazy(size: number, produce: () => Uint8Array): LazyBytes {
  return { size, produce };
}

/** A float32 tensor from the checkpoint, kept float32 (norms, biases, tokens, layer scales). */
export function weightF32(c: BuildContext, name: string, shape: readonly number[]): string {
  requireTensor(c, name, shape);
  const n = shape.reduce((a, b) => a * b, 1);
  return c.g.initializer(name, DataType.FLOAT, shape, lazy(n * 4, () => typedBytes(c.ckpt.read(name, shape))));
}

/** Linear weight [out, in] from the checkpoint, transposed to [in, out] for MatMul. */
function transposed(w: Float32Array, out: number, inn: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let k = 0; k < inn; k++) t[k * out + o] = w[o * inn + k]!;
  return t;
}

/**
 * Source of one linear layer's weight [out, in]: a checkpoint tensor, or rows [from, from + out)
 * of one (DINOv2 giant's fused gate/up projection).
 */
interface WeightSource {
  name: string;
  rows?: { from: number; total: number };
}

/** The tensor (or its row range) as float32 [rows, ...rowShape]. */
function readSource(c: BuildContext, src: WeightSource, rows: number, rowShape: readonly number[]): Float32Array {
  const all = c.ckpt.read(src.name, [src.rows?.total ?? rows, ...rowShape]);
  if (!src.rows) return all;
  const len = rowShape.reduce((a, b) => a * b, 1);
  return all.slice(src.rows.from * len, (src.rows.from + rows) * len);
}

/**
 * y = x·Wᵀ + b, W stored [out, in]. fp32: MatMul; fp16: fp16 weights cast up when the session
 * loads (ORT folds the Cast: half the file, same math and speed on CPU); int8: DynamicQuantizeMatMul
 * with symmetric per-output-channel int8 weights (activations quantised per tensor at run time);
 * int4: MatMulNBits, weight-only, asymmetric blocks of 32 along the input.
 */
function linearFrom(c: BuildContext, x: string, w: WeightSource, bias: WeightSource | undefined, out: number, inn: number): string {
  const { g } = c;
  requireTensor(c, w.name, [w.rows?.total ?? out, inn]);
  if (bias) requireTensor(c, bias.name, [bias.rows?.total ?? out]);
  const suffix = w.rows ? `.rows${w.rows.from}-${w.rows.from + out}` : '';
  const wName = `${w.name}${suffix}`;
  const b = bias && g.initializer(`${bias.name}${suffix}`, DataType.FLOAT, [out], lazy(out * 4, () => typedBytes(readSource(c, bias, out, []))));
  const addBias = (y: string) => (b ? g.op('Add', [y, b]) : y);
  switch (c.precision) {
    case 'fp32': {
      const init = g.initializer(wName, DataType.FLOAT, [inn, out], lazy(inn * out * 4, () => typedBytes(transposed(readSource(c, w, out, [inn]), out, inn))));
      return addBias(g.op('MatMul', [x, init]));
    }
    case 'fp16': {
      const init = g.initializer(wName, DataType.FLOAT16, [inn, out], lazy(inn * out * 2, () => typedBytes(float32ToFloat16(transposed(readSource(c, w, out, [inn]), out, inn)))));
      return addBias(g.op('MatMul', [x, g.op('Cast', [init], { to: i(DataType.FLOAT) })]));
    }
    case 'int8': {
      // Values and scales come from one quantisation, computed when the first of them is written
      // (values, then scales: the writer keeps initializer order) and dropped after the second.
      let q: ReturnType<typeof quantizeInt8PerColumn> | undefined;
      const get = () => (q ??= quantizeInt8PerColumn(transposed(readSource(c, w, out, [inn]), out, inn), inn, out));
      const values = g.initializer(`${wName}.int8`, DataType.INT8, [inn, out], lazy(inn * out, () => typedBytes(get().values)));
      const scales = g.initializer(`${wName}.scale`, DataType.FLOAT, [out], lazy(out * 4, () => {
        const s = get().scales;
        q = undefined;
        return typedBytes(s);
      }));
      return g.op('DynamicQuantizeMatMul', [x, values, scales, '', ...(b ? [b] : [])], {}, { domain: MS_DOMAIN });
    }
    case 'int4': {
      const blocks = Math.ceil(inn / INT4_BLOCK);
      const zpBytes = out * Math.ceil(blocks / 2);
      let q: Int4Weights | undefined;
      const get = () => (q ??= quantizeInt4Blocks(readSource(c, w, out, [inn]), out, inn));
      const packed = g.initializer(`${wName}.int4`, DataType.UINT8, [out, blocks, INT4_BLOCK / 2], lazy(out * blocks * (INT4_BLOCK / 2), () => typedBytes(get().packed)));
      const scales = g.initializer(`${wName}.scale`, DataType.FLOAT, [out * blocks], lazy(out * blocks * 4, () => typedBytes(get().scales)));
      const zeroPoints = g.initializer(`${wName}.zero_point`, DataType.UINT8, [zpBytes], lazy(zpBytes, () => {
        const z = get().zeroPoints;
        q = undefined;
        return typedBytes(z);
      }));
      // accuracy_level 0: float32 activations (level 4, int8 compute, measured no faster here).
      return g.op('MatMulNBits', [x, packed, scales, zeroPoints, '', ...(b ? [b] : [])], { K: i(inn), N: i(out), bits: i(4), block_size: i(INT4_BLOCK), accuracy_level: i(0) }, { domain: MS_DOMAIN });
    }
  }
}

export function linear(c: BuildContext, x: string, prefix: string, out: number, inn: number, bias: boolean): string {
  return linearFrom(c, x, { name: `${prefix}.weight` }, bias ? { name: `${prefix}.bias` } : undefined, out, inn);
}

/** A LayerNorm over the last axis whose weights (prefix.weight, prefix.bias) are added once, applied by the returned function. */
function layerNormOf(c: BuildContext, prefix: string): (x: string) => string {
  const d = c.spec.hiddenSize;
  const weight = weightF32(c, `${prefix}.weight`, [d]);
  const bias = weightF32(c, `${prefix}.bias`, [d]);
  return (x) => c.g.op('LayerNormalization', [x, weight, bias], { axis: i(-1), epsilon: f(c.spec.layerNormEps) });
}

export function layerNorm(c: BuildContext, x: string, prefix: string): string {
  return layerNormOf(c, prefix)(x);
}

function activate(g: GraphBuilder, x: string, act: VitSpec['mlpActivation']): string {
  // com.microsoft Gelu is the exact erf form (FastGelu would be the tanh approximation).
  if (act === 'gelu') return g.op('Gelu', [x], {}, { domain: MS_DOMAIN });
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
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

/** The contract's input (model/contract.ts): normalised pixels, any batch and whole-patch size. */
export function pixelInput(g: GraphBuilder): string {
  return g.input(MODEL_INPUT, DataType.FLOAT, ['batch', 3, 'height', 'width']);
}

/**
 * Final LayerNorm over every token and the two contract outputs (pooler = token 0, the CLS); the
 * same norm, with the same weights, over each kept intermediate hidden state (block → value), as
 * Meta's get_intermediate_layers(norm=True) does.
 */
export function finish(c: BuildContext, h: string, normPrefix: string, kept: ReadonlyMap<number, string>): void {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const norm = layerNormOf(c, normPrefix);
  g.rename(norm(h), MODEL_OUTPUT);
  g.rename(g.op('Gather', [MODEL_OUTPUT, g.constInt64([0], [])], { axis: i(1) }), MODEL_POOLER);
  g.output(MODEL_OUTPUT, DataType.FLOAT, ['batch', 'tokens', d]);
  g.output(MODEL_POOLER, DataType.FLOAT, ['batch', d]);
  for (const [k, value] of kept) {
    g.rename(norm(value), layerOutput(k));
    g.output(layerOutput(k), DataType.FLOAT, ['batch', 'tokens', d]);
  }
}
