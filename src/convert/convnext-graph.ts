/**
 * DINOv3 ConvNeXt as an ONNX graph (docs/model-architecture.md §8), op for op as Hugging Face's
 * DINOv3ConvNextModel: a 4x4/4 stem conv and a channels-first LayerNorm; before each later stage
 * a channels-first LayerNorm and a 2x2/2 conv; in every block a depthwise 7x7 conv, LayerNorm over
 * the channels, Linear 4x wide, GELU, Linear back, the layer scale (gamma) and the residual. Then
 * the final stage's mean over all positions goes first as the "CLS" token, the positions follow
 * in row-major order, and one LayerNorm covers them all, so the model keeps the ViTs' contract
 * with a patch of 32 pixels (the total stride) and no registers. Height, width and batch are
 * dynamic. The Linears follow the precision; the convolutions stay float32, as the ViTs' patch
 * embedding does.
 */
import { type GraphBuilder, i, ints } from '../onnx/builder.js';
import type { ConvNextSpec } from '../model/hf-config.js';
import { type WeightContext, activate, contractOutputs, layerNormOver, linear, pixelInput, weightF32 } from './layers.js';

export interface ConvNextContext extends WeightContext {
  spec: ConvNextSpec;
}

const DEPTHWISE_KERNEL = 7;
/** The blocks' MLP is this many times the stage's width (fixed in Hugging Face's layer). */
const MLP_RATIO = 4;

const toChannelsLast = (g: GraphBuilder, x: string) => g.op('Transpose', [x], { perm: ints([0, 2, 3, 1]) });
const toChannelsFirst = (g: GraphBuilder, x: string) => g.op('Transpose', [x], { perm: ints([0, 3, 1, 2]) });

/** LayerNorm over the channels of an NCHW tensor (Hugging Face's data_format="channels_first"). */
function channelsFirstNorm(c: ConvNextContext, x: string, prefix: string, width: number): string {
  return toChannelsFirst(c.g, layerNormOver(c, toChannelsLast(c.g, x), prefix, width, c.spec.layerNormEps));
}

/** Conv with kernel = stride = `k` (no padding: a remainder past the last whole step is dropped, as torch does). */
function stridedConv(c: ConvNextContext, x: string, prefix: string, out: number, inn: number, k: number): string {
  return c.g.op('Conv', [x, weightF32(c, `${prefix}.weight`, [out, inn, k, k]), weightF32(c, `${prefix}.bias`, [out])], {
    kernel_shape: ints([k, k]),
    strides: ints([k, k]),
  });
}

/** One block on NCHW x: x + gamma · pw2(act(pw1(norm(dwconv(x))))), the MLP channels-last. */
function block(c: ConvNextContext, x: string, prefix: string, width: number): string {
  const { g, spec } = c;
  const k = DEPTHWISE_KERNEL;
  const pad = (k - 1) / 2;
  const dw = g.op('Conv', [x, weightF32(c, `${prefix}.depthwise_conv.weight`, [width, 1, k, k]), weightF32(c, `${prefix}.depthwise_conv.bias`, [width])], {
    kernel_shape: ints([k, k]),
    pads: ints([pad, pad, pad, pad]),
    group: i(width),
  });
  const normed = layerNormOver(c, toChannelsLast(g, dw), `${prefix}.layer_norm`, width, spec.layerNormEps);
  const hidden = activate(g, linear(c, normed, `${prefix}.pointwise_conv1`, MLP_RATIO * width, width, true), spec.mlpActivation);
  const out = linear(c, hidden, `${prefix}.pointwise_conv2`, width, MLP_RATIO * width, true);
  const scaled = g.op('Mul', [out, weightF32(c, `${prefix}.gamma`, [width])]);
  return g.op('Add', [x, toChannelsFirst(g, scaled)]);
}

export function buildConvNext(c: ConvNextContext): void {
  const { g, spec } = c;
  let h = pixelInput(g);
  let inn = 3;
  spec.hiddenSizes.forEach((width, s) => {
    const down = `stages.${s}.downsample_layers`;
    h = g.scope(down, () =>
      s === 0
        ? channelsFirstNorm(c, stridedConv(c, h, `${down}.0`, width, inn, 4), `${down}.1`, width)
        : stridedConv(c, channelsFirstNorm(c, h, `${down}.0`, inn), `${down}.1`, width, inn, 2),
    );
    for (let l = 0; l < spec.depths[s]!; l++) {
      const p = `stages.${s}.layers.${l}`;
      h = g.scope(p, () => block(c, h, p, width));
    }
    inn = width;
  });

  // [B, C, H, W] → [B, 1 + H·W, C]: the mean over positions (before the norm, as Hugging Face
  // pools), then the positions row-major; one LayerNorm over every token.
  const d = inn;
  const pooled = g.op('ReduceMean', [h, g.constInt64([2, 3])], { keepdims: i(1) });
  const flat = (x: string) => g.op('Reshape', [x, g.constInt64([0, d, -1])]);
  const tokens = g.op('Transpose', [g.op('Concat', [flat(pooled), flat(h)], { axis: i(2) })], { perm: ints([0, 2, 1]) });
  contractOutputs(g, layerNormOver(c, tokens, 'layer_norm', d, spec.layerNormEps), d);
}
