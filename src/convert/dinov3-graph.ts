/**
 * DINOv3 ViT as an ONNX graph (ARCH_FACTS §1-3): patch conv → [CLS, registers, patches] → L
 * pre-norm layers with RoPE on the patch tokens' q and k → final LayerNorm. Height, width and
 * batch are dynamic: the RoPE tables are computed in the graph from the patch grid's shape.
 */
import { DataType, i } from '../onnx/builder.js';
import { type BuildContext, expandToBatch, finish, patchEmbed, transformerLayer, weightF32 } from './vit-blocks.js';

/**
 * cos and sign-folded sin tables [T, 1, head_dim] for T = prefix + Hp·Wp tokens; the prefix rows
 * are cos = 1, sin = 0 so CLS and registers pass through unrotated without slicing q and k.
 */
function ropeTables(c: BuildContext, gridShape: string): { cos: string; sinSigned: string } {
  const { g, spec } = c;
  const hd = spec.headDim;
  const F = hd / 4;
  // HF: inv_freq[j] = 1 / theta^(4j/hd), in float32.
  const invFreq = Float32Array.from({ length: F }, (_, j) => 1 / spec.ropeTheta ** ((4 * j) / hd));
  const twoPiFreq = g.constFloat(Array.from(invFreq, (v) => 2 * Math.PI * v), [1, F]);

  // Patch centres in (-1, 1), each axis normalised by its own patch count.
  const axisCoords = (axis: number) => {
    const n = g.op('Cast', [g.op('Slice', [gridShape, g.constInt64([axis]), g.constInt64([axis + 1])])], { to: i(DataType.FLOAT) });
    const idx = g.op('Range', [g.constFloat([0], []), g.op('Squeeze', [n, g.constInt64([0])]), g.constFloat([1], [])]);
    const centre = g.op('Div', [g.op('Mul', [g.op('Add', [idx, g.constFloat([0.5])]), g.constFloat([2])]), n]);
    return g.op('Sub', [centre, g.constFloat([1])]);
  };
  const ys = axisCoords(2); // [Hp]
  const xs = axisCoords(3); // [Wp]
  const hp = g.op('Slice', [gridShape, g.constInt64([2]), g.constInt64([3])]);
  const wp = g.op('Slice', [gridShape, g.constInt64([3]), g.constInt64([4])]);
  const grid = g.op('Concat', [hp, wp], { axis: i(0) });
  // Row-major patches: y varies by row, x by column; flattened to [N, 1].
  const yAll = g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [ys, g.constInt64([1])]), grid]), g.constInt64([-1, 1])]);
  const xAll = g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [xs, g.constInt64([0])]), grid]), g.constInt64([-1, 1])]);
  const ay = g.op('MatMul', [yAll, twoPiFreq]); // [N, F]
  const ax = g.op('MatMul', [xAll, twoPiFreq]);
  const angles = g.op('Concat', [ay, ax, ay, ax], { axis: i(1) }); // [N, hd]: [y, x, y, x]

  const prefix = 1 + spec.numRegisters;
  const ones = g.constFloat(new Float32Array(prefix * hd).fill(1), [prefix, hd]);
  const zeros = g.constFloat(new Float32Array(prefix * hd), [prefix, hd]);
  const cos = g.op('Concat', [ones, g.op('Cos', [angles])], { axis: i(0) });
  const sin = g.op('Sin', [angles]);
  // rotate_half(q)·sin = [q2, q1]·[-sin1, sin2]; fold the sign into the table once.
  const sign = g.constFloat(Array.from({ length: hd }, (_, d) => (d < hd / 2 ? -1 : 1)), [1, hd]);
  const sinSigned = g.op('Concat', [zeros, g.op('Mul', [sin, sign])], { axis: i(0) });
  const perHead = g.constInt64([1]);
  return { cos: g.op('Unsqueeze', [cos, perHead]), sinSigned: g.op('Unsqueeze', [sinSigned, perHead]) };
}

export function buildDinov3(c: BuildContext): void {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const x = g.input('pixel_values', DataType.FLOAT, ['batch', 3, 'height', 'width']);
  const { tokens, gridShape } = patchEmbed(c, x, 'embeddings.patch_embeddings.weight', 'embeddings.patch_embeddings.bias');

  const cls = weightF32(c, 'embeddings.cls_token', [1, 1, d]);
  const parts = [expandToBatch(g, cls, x)];
  if (spec.numRegisters > 0) parts.push(expandToBatch(g, weightF32(c, 'embeddings.register_tokens', [1, spec.numRegisters, d]), x));
  let h = g.op('Concat', [...parts, tokens], { axis: i(1) });

  const rope = g.scope('rope', () => ropeTables(c, gridShape));
  const gated = spec.gatedMlp;
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `layer.${l}`;
    h = g.scope(p, () =>
      transformerLayer(c, h, {
        norm1: `${p}.norm1`,
        q: `${p}.attention.q_proj`,
        k: `${p}.attention.k_proj`,
        v: `${p}.attention.v_proj`,
        o: `${p}.attention.o_proj`,
        ls1: `${p}.layer_scale1.lambda1`,
        norm2: `${p}.norm2`,
        up: `${p}.mlp.up_proj`,
        down: `${p}.mlp.down_proj`,
        ...(gated ? { gate: `${p}.mlp.gate_proj` } : {}),
        ls2: `${p}.layer_scale2.lambda1`,
      }, rope),
    );
  }
  finish(c, h, 'norm');
}
