/**
 * DINOv2 and DINOv2-with-registers as an ONNX graph (ARCH_FACTS §6): patch conv (14) + learned
 * position embeddings resized in the graph to the input's patch grid (bicubic, align_corners
 * false; with antialias for the registers model, as Hugging Face does), [CLS, registers, patches],
 * L pre-norm layers, final LayerNorm.
 */
import { DataType, f, i, ints, s, typedBytes } from '../onnx/builder.js';
import { UserError } from '../errors.js';
import { type BuildContext, expandToBatch, finish, patchEmbed, transformerLayer, weightF32 } from './vit-blocks.js';

/** Position embeddings [1, 1 + G², D] split into the CLS row and the grid as [1, D, G, G]. */
function positionTables(c: BuildContext): { clsWithPos: string; grid: string } {
  const { g, spec, ckpt } = c;
  const d = spec.hiddenSize;
  const G = spec.posGrid;
  const name = 'embeddings.position_embeddings';
  const shape = [1, 1 + G * G, d];
  const info = ckpt.info(name);
  if (info.shape.join() !== shape.join()) {
    throw new UserError(`tensor ${name} in ${info.file} has shape [${info.shape}], expected [${shape}] from config.json`);
  }
  ckpt.info('embeddings.cls_token');
  // CLS always gets position row 0; fold the sum into one constant.
  const clsWithPos = g.initializer('embeddings.cls_token+pos', DataType.FLOAT, [1, 1, d], {
    size: d * 4,
    produce: () => {
      const pos = ckpt.read(name, shape);
      const cls = ckpt.read('embeddings.cls_token', [1, 1, d]);
      return typedBytes(cls.map((v, k) => v + pos[k]!));
    },
  });
  const grid = g.initializer('embeddings.position_grid', DataType.FLOAT, [1, d, G, G], {
    size: d * G * G * 4,
    produce: () => {
      const pos = ckpt.read(name, shape);
      const out = new Float32Array(d * G * G);
      for (let p = 0; p < G * G; p++) for (let k = 0; k < d; k++) out[k * G * G + p] = pos[(1 + p) * d + k]!;
      return typedBytes(out);
    },
  });
  return { clsWithPos, grid };
}

export function buildDinov2(c: BuildContext): void {
  const { g, spec, ckpt } = c;
  const d = spec.hiddenSize;
  const x = g.input('pixel_values', DataType.FLOAT, ['batch', 3, 'height', 'width']);
  const { tokens, gridShape } = patchEmbed(c, x, 'embeddings.patch_embeddings.projection.weight', 'embeddings.patch_embeddings.projection.bias');
  const { clsWithPos, grid } = positionTables(c);

  // Resize the learned grid to (Hp, Wp): torch bicubic is Keys a = -0.75 with clamped taps; its
  // antialiased variant is a = -0.5 with the window cut at the border and renormalised.
  const sizes = g.op('Concat', [g.constInt64([1, d]), g.op('Slice', [gridShape, g.constInt64([2]), g.constInt64([4])])], { axis: i(0) });
  const resized = g.op('Resize', [grid, '', '', sizes], {
    mode: s('cubic'),
    coordinate_transformation_mode: s('half_pixel'),
    ...(spec.posAntialias ? { antialias: i(1), cubic_coeff_a: f(-0.5), exclude_outside: i(1) } : { cubic_coeff_a: f(-0.75) }),
  });
  const posTokens = g.op('Transpose', [g.op('Reshape', [resized, g.constInt64([1, d, -1])])], { perm: ints([0, 2, 1]) });
  const patches = g.op('Add', [tokens, posTokens]);

  const parts = [expandToBatch(g, clsWithPos, x)];
  if (spec.numRegisters > 0) parts.push(expandToBatch(g, weightF32(c, 'embeddings.register_tokens', [1, spec.numRegisters, d]), x));
  let h = g.op('Concat', [...parts, patches], { axis: i(1) });

  const swiglu = ckpt.has('encoder.layer.0.mlp.weights_in.weight');
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `encoder.layer.${l}`;
    h = g.scope(p, () =>
      transformerLayer(c, h, {
        norm1: `${p}.norm1`,
        q: `${p}.attention.attention.query`,
        k: `${p}.attention.attention.key`,
        v: `${p}.attention.attention.value`,
        o: `${p}.attention.output.dense`,
        ls1: `${p}.layer_scale1.lambda1`,
        norm2: `${p}.norm2`,
        ...(swiglu ? { fusedIn: `${p}.mlp.weights_in`, down: `${p}.mlp.weights_out` } : { up: `${p}.mlp.fc1`, down: `${p}.mlp.fc2` }),
        ls2: `${p}.layer_scale2.lambda1`,
      }),
    );
  }
  finish(c, h, 'layernorm');
}
