/**
 * DINOv2 and DINOv2-with-registers as an ONNX graph (docs/model-architecture.md §6): patch conv (14) + learned
 * position embeddings resized in the graph to the input's patch grid, [CLS, registers, patches],
 * L pre-norm layers, final LayerNorm.
 */
import { DataType, type GraphBuilder, f, i, ints, s, typedBytes } from '../onnx/builder.js';
import { UserError } from '../core/errors.js';
import { pixelInput, requireTensor, weightF32 } from './layers.js';
import { type BuildContext, expandToBatch, finish, patchEmbed, shapeSlice, transformerLayer } from './vit-blocks.js';

const POS = 'embeddings.position_embeddings';

/**
 * Resizes a [1, D, G, G] position grid to `sizes` ([1, D, Hp, Wp]) as Hugging Face does with
 * torch bicubic, align_corners false, explicit size. Plain: Keys a = -0.75, taps clamped at the
 * border; antialias (registers models): a = -0.5, window cut at the border and renormalised.
 * Measured against torch for grids 1…79 on each axis: ≤ 7.6e-5 on a table of magnitude 9, except
 * antialiased output width 1 with height ≠ G, where torch itself is not transpose-consistent.
 */
export function resizePositionGrid(g: GraphBuilder, grid: string, sizes: string, antialias: boolean): string {
  return g.op('Resize', [grid, '', '', sizes], {
    mode: s('cubic'),
    coordinate_transformation_mode: s('half_pixel'),
    ...(antialias ? { antialias: i(1), cubic_coeff_a: f(-0.5), exclude_outside: i(1) } : { cubic_coeff_a: f(-0.75) }),
  });
}

/**
 * The learned table [1, 1 + G², D] split into CLS + its position (one constant) and the patch
 * grid as [1, D, G, G]. G comes from the table itself, as in Hugging Face (37 for image_size 518).
 */
function positionTables(c: BuildContext): { clsWithPos: string; grid: string } {
  const { g, spec, ckpt } = c;
  const d = spec.hiddenSize;
  const stored = ckpt.info(POS).shape;
  const G = Math.round(Math.sqrt((stored[1] ?? 0) - 1));
  if (stored.length !== 3 || G < 1 || 1 + G * G !== stored[1]) {
    throw new UserError(`tensor ${POS} in ${ckpt.info(POS).file} has shape [${stored}], expected [1, 1 + G*G, ${d}] (a square grid)`);
  }
  const shape = [1, 1 + G * G, d];
  requireTensor(c, POS, shape);
  requireTensor(c, 'embeddings.cls_token', [1, 1, d]);
  const clsWithPos = g.initializer('embeddings.cls_token+position_embeddings[0]', DataType.FLOAT, [1, 1, d], {
    size: d * 4,
    produce: () => {
      const pos = ckpt.read(POS, shape);
      return typedBytes(ckpt.read('embeddings.cls_token', [1, 1, d]).map((v, k) => v + pos[k]!));
    },
  });
  const grid = g.initializer(`${POS}[1:]`, DataType.FLOAT, [1, d, G, G], {
    size: d * G * G * 4,
    produce: () => {
      const pos = ckpt.read(POS, shape);
      const out = new Float32Array(d * G * G);
      for (let p = 0; p < G * G; p++) for (let k = 0; k < d; k++) out[k * G * G + p] = pos[(1 + p) * d + k]!;
      return typedBytes(out);
    },
  });
  return { clsWithPos, grid };
}

export function buildDinov2(c: BuildContext): void {
  const { g, spec } = c;
  const d = spec.hiddenSize;
  const x = pixelInput(g);
  const { tokens, gridShape } = patchEmbed(c, x, 'embeddings.patch_embeddings.projection.weight', 'embeddings.patch_embeddings.projection.bias');
  const { clsWithPos, grid } = positionTables(c);

  // At the native grid (G×G) the resize is an exact identity, matching HF's shortcut there.
  const sizes = g.op('Concat', [g.constInt64([1, d]), shapeSlice(g, gridShape, 2, 4)], { axis: i(0) });
  const resized = resizePositionGrid(g, grid, sizes, spec.posAntialias);
  const posTokens = g.op('Transpose', [g.op('Reshape', [resized, g.constInt64([1, d, -1])])], { perm: ints([0, 2, 1]) });
  const patches = g.op('Add', [tokens, posTokens]);

  // Registers go between CLS and the patches and get no position embedding.
  const prefix = [expandToBatch(g, clsWithPos, x)];
  if (spec.numRegisters > 0) prefix.push(expandToBatch(g, weightF32(c, 'embeddings.register_tokens', [1, spec.numRegisters, d]), x));
  let h = g.op('Concat', [...prefix, patches], { axis: i(1) });

  const kept = new Map<number, string>();
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `encoder.layer.${l}`;
    const mlp = spec.gatedMlp
      ? { kind: 'fused' as const, gateUp: `${p}.mlp.weights_in`, down: `${p}.mlp.weights_out` }
      : { kind: 'plain' as const, up: `${p}.mlp.fc1`, down: `${p}.mlp.fc2` };
    h = g.scope(p, () =>
      transformerLayer(c, h, {
        norm1: `${p}.norm1`,
        q: `${p}.attention.attention.query`,
        k: `${p}.attention.attention.key`,
        v: `${p}.attention.attention.value`,
        o: `${p}.attention.output.dense`,
        ls1: `${p}.layer_scale1.lambda1`,
        norm2: `${p}.norm2`,
        mlp,
        ls2: `${p}.layer_scale2.lambda1`,
      }),
    );
    if (c.layers.includes(l + 1)) kept.set(l + 1, h);
  }
  finish(c, h, 'layernorm', kept);
}
