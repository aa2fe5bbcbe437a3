/**
 * DINOv3 ViT as an ONNX graph (docs/model-architecture.md §1-3): patch conv → [CLS, registers, patches] → L
 * pre-norm layers with RoPE on the patch tokens' q and k → final LayerNorm. Height, width and
 * batch are dynamic: the RoPE tables are computed in the graph from the patch grid's shape.
 */
import { DataType, i } from '../onnx/builder.js';
import { pixelInput, weightF32 } from './layers.js';
import { type BuildContext, type RopeTables, expandToBatch, finish, patchEmbed, shapeSlice, transformerLayer } from './vit-blocks.js';

/**
 * cos and sin tables [prefix + Hp·Wp, head_dim/2]. Patch p at row i, column j has centre
 * y = 2(i + 0.5)/Hp - 1, x = 2(j + 0.5)/Wp - 1 (each axis normalised by its own patch count) and
 * angles 2π·[y·f₀ … y·f_{F-1}, x·f₀ … x·f_{F-1}] with f_j = theta^(-4j/head_dim); the rotation
 * pairs dim d with d + head_dim/2, both using angle d. The 1 + R prefix rows are cos = 1, sin = 0,
 * so CLS and registers pass through unrotated without slicing q and k.
 */
function ropeTables(c: BuildContext, gridShape: string): RopeTables {
  const { g, spec } = c;
  const hd = spec.headDim;
  const F = hd / 4;
  // inv_freq in float32 as Hugging Face computes it, times 2π (also float32 there).
  const invFreq = Float32Array.from({ length: F }, (_, j) => 1 / spec.ropeTheta ** ((4 * j) / hd));
  const twoPiFreq = g.constFloat(Array.from(invFreq, (v) => 2 * Math.PI * v), [1, F]);

  const hp = shapeSlice(g, gridShape, 2, 3);
  const wp = shapeSlice(g, gridShape, 3, 4);
  const centres = (n: string) => {
    const count = g.op('Cast', [n], { to: i(DataType.FLOAT) });
    const idx = g.op('Range', [g.constFloat([0.5], []), g.op('Add', [g.op('Squeeze', [count, g.constInt64([0])]), g.constFloat([0.5], [])]), g.constFloat([1], [])]);
    return g.op('Sub', [g.op('Div', [g.op('Mul', [idx, g.constFloat([2])]), count]), g.constFloat([1])]);
  };
  // Row-major patches: y varies with the row, x with the column; both flattened to [N, 1].
  const grid = g.op('Concat', [hp, wp], { axis: i(0) });
  const flat = (v: string, axis: number) => g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [v, g.constInt64([axis])]), grid]), g.constInt64([-1, 1])]);
  const ys = flat(centres(hp), 1);
  const xs = flat(centres(wp), 0);
  const angles = g.op('Concat', [g.op('MatMul', [ys, twoPiFreq]), g.op('MatMul', [xs, twoPiFreq])], { axis: i(1) }); // [N, hd/2]

  const prefix = 1 + spec.numRegisters;
  const ones = g.constFloat(new Float32Array(prefix * (hd / 2)).fill(1), [prefix, hd / 2]);
  const zeros = g.constFloat(new Float32Array(prefix * (hd / 2)), [prefix, hd / 2]);
  return {
    cos: g.op('Concat', [ones, g.op('Cos', [angles])], { axis: i(0) }),
    sin: g.op('Concat', [zeros, g.op('Sin', [angles])], { axis: i(0) }),
    start: g.constInt64([0]),
  };
}

export function buildDinov3(c: BuildContext): void {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const x = pixelInput(g);
  const { tokens, gridShape } = patchEmbed(c, x, 'embeddings.patch_embeddings.weight', 'embeddings.patch_embeddings.bias');

  const prefix = [expandToBatch(g, weightF32(c, 'embeddings.cls_token', [1, 1, d]), x)];
  if (spec.numRegisters > 0) prefix.push(expandToBatch(g, weightF32(c, 'embeddings.register_tokens', [1, spec.numRegisters, d]), x));
  let h = g.op('Concat', [...prefix, tokens], { axis: i(1) });

  const rope = g.scope('rope', () => ropeTables(c, gridShape));
  const kept = new Map<number, string>();
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `layer.${l}`;
    const mlp = spec.gatedMlp
      ? { kind: 'gated' as const, gate: `${p}.mlp.gate_proj`, up: `${p}.mlp.up_proj`, down: `${p}.mlp.down_proj` }
      : { kind: 'plain' as const, up: `${p}.mlp.up_proj`, down: `${p}.mlp.down_proj` };
    h = g.scope(p, () =>
      transformerLayer(
        c,
        h,
        {
          norm1: `${p}.norm1`,
          q: `${p}.attention.q_proj`,
          k: `${p}.attention.k_proj`,
          v: `${p}.attention.v_proj`,
          o: `${p}.attention.o_proj`,
          ls1: `${p}.layer_scale1.lambda1`,
          norm2: `${p}.norm2`,
          mlp,
          ls2: `${p}.layer_scale2.lambda1`,
        },
        rope,
      ),
    );
    if (c.layers.includes(l + 1)) kept.set(l + 1, h);
  }
  finish(c, h, 'norm', kept);
}
