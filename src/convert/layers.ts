/**
 * What every converted graph (the ViTs' and the ConvNeXt's) is made of: the contract's input and
 * outputs, checkpoint weights, linear layers whose weight encoding depends on the precision,
 * LayerNorm and the MLP activations. Weights are lazy: each is read from the checkpoint only while
 * the ONNX file is written, after its name and shape were checked against the checkpoint's header
 * here.
 */
import { DataType, GraphBuilder, f, i, typedBytes } from '../onnx/builder.js';
import type { LazyBytes } from '../onnx/protobuf.js';
import type { Precision } from '../model/info.js';
import { UserError } from '../core/errors.js';
import type { Checkpoint } from './safetensors.js';
import { MODEL_INPUT, MODEL_OUTPUT, MODEL_POOLER } from '../model/contract.js';
import type { Activation } from '../model/hf-config.js';
import { float32ToFloat16 } from '../core/half.js';
import { INT4_BLOCK, type Int4Weights, quantizeInt4Blocks, quantizeInt8PerColumn } from './quantize.js';

export const MS_DOMAIN = 'com.microsoft';

/** The graph being built, where its weights come from, and how linear weights are stored. */
export interface WeightContext {
  g: GraphBuilder;
  ckpt: Checkpoint;
  precision: Precision;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, k) => v === b[k]);

/** Checks a tensor's presence and shape now, so a wrong checkpoint fails before anything is written. */
export function requireTensor(c: WeightContext, name: string, shape: readonly number[]): void {
  const t = c.ckpt.info(name);
  if (!sameShape(t.shape, shape)) {
    throw new UserError(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${shape}] from config.json; the checkpoint does not match its config`);
  }
}

function lazy(size: number, produce: () => Uint8Array): LazyBytes {
  return { size, produce };
}

/** A float32 tensor from the checkpoint, kept float32 (norms, biases, tokens, layer scales). */
export function weightF32(c: WeightContext, name: string, shape: readonly number[]): string {
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
export interface WeightSource {
  name: string;
  rows?: { from: number; total: number };
}

/** The tensor (or its row range) as float32 [rows, ...rowShape]. */
function readSource(c: WeightContext, src: WeightSource, rows: number, rowShape: readonly number[]): Float32Array {
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
export function linearFrom(c: WeightContext, x: string, w: WeightSource, bias: WeightSource | undefined, out: number, inn: number): string {
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

export function linear(c: WeightContext, x: string, prefix: string, out: number, inn: number, bias: boolean): string {
  return linearFrom(c, x, { name: `${prefix}.weight` }, bias ? { name: `${prefix}.bias` } : undefined, out, inn);
}

export function activate(g: GraphBuilder, x: string, act: Activation): string {
  // com.microsoft Gelu is the exact erf form (FastGelu would be the tanh approximation).
  if (act === 'gelu') return g.op('Gelu', [x], {}, { domain: MS_DOMAIN });
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/**
 * LayerNorm over the last axis (of `width` values) with the checkpoint's weight and bias, added to
 * the graph once and applied by the returned function (to as many tensors as share the norm).
 */
export function layerNormOf(c: WeightContext, prefix: string, width: number, eps: number): (x: string) => string {
  const weight = weightF32(c, `${prefix}.weight`, [width]);
  const bias = weightF32(c, `${prefix}.bias`, [width]);
  return (x) => c.g.op('LayerNormalization', [x, weight, bias], { axis: i(-1), epsilon: f(eps) });
}

/** LayerNorm over the last axis (of `width` values) with the checkpoint's weight and bias. */
export function layerNormOver(c: WeightContext, x: string, prefix: string, width: number, eps: number): string {
  return layerNormOf(c, prefix, width, eps)(x);
}

/** The contract's input (model/contract.ts): normalised pixels, any batch and whole-patch size. */
export function pixelInput(g: GraphBuilder): string {
  return g.input(MODEL_INPUT, DataType.FLOAT, ['batch', 3, 'height', 'width']);
}

/** The two contract outputs from the final [B, tokens, hidden] tensor: it, and its token 0 as the pooler. */
export function contractOutputs(g: GraphBuilder, tokens: string, hiddenSize: number): void {
  g.rename(tokens, MODEL_OUTPUT);
  g.rename(g.op('Gather', [MODEL_OUTPUT, g.constInt64([0], [])], { axis: i(1) }), MODEL_POOLER);
  g.output(MODEL_OUTPUT, DataType.FLOAT, ['batch', 'tokens', hiddenSize]);
  g.output(MODEL_POOLER, DataType.FLOAT, ['batch', hiddenSize]);
}
