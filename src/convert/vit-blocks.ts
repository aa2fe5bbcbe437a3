/**
 * Building blocks shared by the DINOv3 and DINOv2 graphs: pre-norm transformer layers with layer
 * scale, linear layers whose weight encoding depends on the precision, attention and both MLPs.
 * Weights are lazy: each is read from the checkpoint only while the ONNX file is written.
 */
import { DataType, GraphBuilder, f, i, ints, typedBytes } from '../onnx/builder.js';
import type { LazyBytes } from '../onnx/protobuf.js';
import type { Precision } from '../model/info.js';
import { UserError } from '../errors.js';
import type { Checkpoint } from './safetensors.js';
import type { VitSpec } from './config.js';
import { float32ToFloat16 } from './half.js';
import { quantizeInt4Blocks, quantizeInt8PerColumn, INT4_BLOCK } from './quantize.js';

export const MS_DOMAIN = 'com.microsoft';

export interface BuildContext {
  g: GraphBuilder;
  ckpt: Checkpoint;
  spec: VitSpec;
  precision: Precision;
}

function lazy(size: number, produce: () => Uint8Array): LazyBytes {
  return { size, produce };
}

/**
 * Weights are read only while the file is written, so check names and shapes against the
 * checkpoint's header now: a wrong checkpoint fails before anything is written.
 */
function requireTensor(c: BuildContext, name: string, shape: readonly number[]): void {
  const t = c.ckpt.info(name);
  if (t.shape.length !== shape.length || t.shape.some((v, k) => v !== shape[k])) {
    throw new UserError(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${shape}] from config.json`);
  }
}

/** A float32 tensor from the checkpoint, kept float32 (norms, biases, tokens, layer scales). */
export function weightF32(c: BuildContext, name: string, shape: readonly number[], onnxShape: readonly number[] = shape): string {
  const n = shape.reduce((a, b) => a * b, 1);
  requireTensor(c, name, shape);
  return c.g.initializer(name, DataType.FLOAT, onnxShape, lazy(n * 4, () => typedBytes(c.ckpt.read(name, shape))));
}

/** Linear weight [out, in] from the checkpoint transposed to [in, out] for MatMul. */
function transposed(c: BuildContext, name: string, out: number, inn: number): Float32Array {
  const w = c.ckpt.read(name, [out, inn]);
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let k = 0; k < inn; k++) t[k * out + o] = w[o * inn + k]!;
  return t;
}

/**
 * y = x·Wᵀ (+ b), W stored [out, in]. fp32: plain MatMul; fp16: fp16 weights cast up when the
 * session loads (half the file, same math on CPU); int8: DynamicQuantizeMatMul with symmetric
 * per-output-channel weights; int4: MatMulNBits, weight-only, blocks of 32 along the input.
 */
export function linear(c: BuildContext, x: string, prefix: string, out: number, inn: number, bias: boolean): string {
  const { g } = c;
  const wName = `${prefix}.weight`;
  requireTensor(c, wName, [out, inn]);
  let y: string;
  switch (c.precision) {
    case 'fp32': {
      const w = g.initializer(wName, DataType.FLOAT, [inn, out], lazy(inn * out * 4, () => typedBytes(transposed(c, wName, out, inn))));
      y = g.op('MatMul', [x, w]);
      break;
    }
    case 'fp16': {
      const w = g.initializer(wName, DataType.FLOAT16, [inn, out], lazy(inn * out * 2, () => typedBytes(float32ToFloat16(transposed(c, wName, out, inn)))));
      y = g.op('MatMul', [x, g.op('Cast', [w], { to: i(DataType.FLOAT) })]);
      break;
    }
    case 'int8': {
      // Scales and int8 weights come from one quantisation; compute it once, on first use.
      let q: ReturnType<typeof quantizeInt8PerColumn> | undefined;
      const get = () => (q ??= quantizeInt8PerColumn(transposed(c, wName, out, inn), inn, out));
      const w = g.initializer(`${wName}.int8`, DataType.INT8, [inn, out], lazy(inn * out, () => typedBytes(get().values)));
      const s = g.initializer(`${wName}.scale`, DataType.FLOAT, [out], lazy(out * 4, () => {
        const bytes = typedBytes(get().scales);
        q = undefined;
        return bytes;
      }));
      y = g.op('DynamicQuantizeMatMul', [x, w, s], {}, { domain: MS_DOMAIN });
      break;
    }
    case 'int4': {
      const blocks = Math.ceil(inn / INT4_BLOCK);
      let q: ReturnType<typeof quantizeInt4Blocks> | undefined;
      const get = () => (q ??= quantizeInt4Blocks(c.ckpt.read(wName, [out, inn]), out, inn));
      const w = g.initializer(`${wName}.int4`, DataType.UINT8, [out, blocks, INT4_BLOCK / 2], lazy(out * blocks * (INT4_BLOCK / 2), () => typedBytes(get().packed)));
      const s = g.initializer(`${wName}.scale`, DataType.FLOAT, [out * blocks], lazy(out * blocks * 4, () => {
        const bytes = typedBytes(get().scales);
        q = undefined;
        return bytes;
      }));
      y = g.op('MatMulNBits', [x, w, s], { K: i(inn), N: i(out), bits: i(4), block_size: i(INT4_BLOCK), accuracy_level: i(0) }, { domain: MS_DOMAIN });
      break;
    }
  }
  return bias ? g.op('Add', [y, weightF32(c, `${prefix}.bias`, [out])]) : y;
}

export function layerNorm(c: BuildContext, x: string, prefix: string): string {
  const d = c.spec.hiddenSize;
  return c.g.op('LayerNormalization', [x, weightF32(c, `${prefix}.weight`, [d]), weightF32(c, `${prefix}.bias`, [d])], {
    axis: i(-1),
    epsilon: f(c.spec.layerNormEps),
  });
}

/** Exact (erf) GELU; ONNX Runtime fuses this pattern into one Gelu kernel. */
export function gelu(g: GraphBuilder, x: string): string {
  const erf = g.op('Erf', [g.op('Mul', [x, g.constFloat([Math.SQRT1_2])])]);
  return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.constFloat([1])])]), g.constFloat([0.5])]);
}

export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
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
  /** Plain MLP: up → GELU → down. */
  up?: string;
  down: string;
  /** DINOv3 gated MLP: down(SiLU(gate) * up). */
  gate?: string;
  /** DINOv2 giant SwiGLU: one fused [2h, D] input projection (first half gated). */
  fusedIn?: string;
  ls2: string;
}

/** Splits [B, T, D] into heads, applies RoPE (when given) and merges back for MultiHeadAttention. */
function withRope(c: BuildContext, x: string, rope: { cos: string; sinSigned: string } | undefined): string {
  if (!rope) return x;
  const { g, spec } = c;
  const half = spec.headDim / 2;
  const heads = g.op('Reshape', [x, g.constInt64([0, 0, spec.numHeads, spec.headDim])]);
  // rotate_half(q) = [-q2, q1]; the sign is folded into sinSigned = [-sin1, sin2].
  const [q1, q2] = g.node('Split', [heads, g.constInt64([half, half])], { axis: i(-1) }, { nOut: 2 });
  const swapped = g.op('Concat', [q2!, q1!], { axis: i(-1) });
  const rotated = g.op('Add', [g.op('Mul', [heads, rope.cos]), g.op('Mul', [swapped, rope.sinSigned])]);
  return g.op('Reshape', [rotated, g.constInt64([0, 0, spec.hiddenSize])]);
}

export function transformerLayer(c: BuildContext, h: string, n: LayerNames, rope?: { cos: string; sinSigned: string }): string {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const a = layerNorm(c, h, n.norm1);
  const q = withRope(c, linear(c, a, n.q, d, d, spec.queryBias), rope);
  const k = withRope(c, linear(c, a, n.k, d, d, spec.keyBias), rope);
  const v = linear(c, a, n.v, d, d, spec.valueBias);
  const attn = g.op('MultiHeadAttention', [q, k, v], { num_heads: i(spec.numHeads) }, { domain: MS_DOMAIN });
  const o = linear(c, attn, n.o, d, d, true);
  h = g.op('Add', [h, g.op('Mul', [o, weightF32(c, n.ls1, [d])])]);

  const m = layerNorm(c, h, n.norm2);
  const inter = spec.intermediateSize;
  let mlp: string;
  if (n.fusedIn) {
    const both = linear(c, m, n.fusedIn, 2 * inter, d, true);
    const [x1, x2] = g.node('Split', [both, g.constInt64([inter, inter])], { axis: i(-1) }, { nOut: 2 });
    mlp = linear(c, g.op('Mul', [silu(g, x1!), x2!]), n.down, d, inter, true);
  } else if (n.gate) {
    const gated = g.op('Mul', [silu(g, linear(c, m, n.gate, inter, d, true)), linear(c, m, n.up!, inter, d, true)]);
    mlp = linear(c, gated, n.down, d, inter, true);
  } else {
    mlp = linear(c, gelu(g, linear(c, m, n.up!, inter, d, true)), n.down, d, inter, true);
  }
  return g.op('Add', [h, g.op('Mul', [mlp, weightF32(c, n.ls2, [d])])]);
}

/** Patch embedding: Conv with kernel = stride = patch → [B, N, D] tokens, row-major patches. */
export function patchEmbed(c: BuildContext, x: string, weight: string, bias: string): { tokens: string; gridShape: string } {
  const { g, spec } = c;
  const p = spec.patchSize;
  const conv = g.op('Conv', [x, weightF32(c, weight, [spec.hiddenSize, 3, p, p]), weightF32(c, bias, [spec.hiddenSize])], {
    kernel_shape: ints([p, p]),
    strides: ints([p, p]),
  });
  const gridShape = g.op('Shape', [conv]); // [B, D, Hp, Wp]
  const flat = g.op('Reshape', [conv, g.constInt64([0, spec.hiddenSize, -1])]);
  return { tokens: g.op('Transpose', [flat], { perm: ints([0, 2, 1]) }), gridShape };
}

/** Expands [1, n, D] to the batch of `like` ([B, ...]). */
export function expandToBatch(g: GraphBuilder, t: string, like: string): string {
  const batch = g.op('Slice', [g.op('Shape', [like]), g.constInt64([0]), g.constInt64([1])]);
  return g.op('Expand', [t, g.op('Concat', [batch, g.constInt64([1, 1])], { axis: i(0) })]);
}

/** Final norm and the two contract outputs. */
export function finish(c: BuildContext, h: string, normPrefix: string): void {
  const { g, spec } = c;
  const out = layerNorm(c, h, normPrefix);
  g.rename(out, 'last_hidden_state');
  const pooled = g.op('Gather', ['last_hidden_state', g.constInt64([0], [])], { axis: i(1) });
  g.rename(pooled, 'pooler_output');
  g.output('last_hidden_state', DataType.FLOAT, ['batch', 'tokens', spec.hiddenSize]);
  g.output('pooler_output', DataType.FLOAT, ['batch', spec.hiddenSize]);
}
