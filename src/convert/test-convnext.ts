/**
 * A deterministic DINOv3 ConvNeXt-shaped checkpoint with random weights, in Hugging Face's layout
 * (the tensor names DINOv3ConvNextModel's save_pretrained writes), for the tests and for measuring
 * conversions at the released shapes. It is NOT a trained model; config.json and a README say so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeSafetensors } from './safetensors.js';
import { NOT_A_REAL_MODEL, normal, seededRandom, uniform } from './test-model.js';

export interface ConvNextTestSpec {
  hiddenSizes: number[];
  depths: number[];
  seed: number;
}

/** Four stages (stride 32), two blocks in the third: fast enough for extract tests at large buckets. */
export const TINY_CONVNEXT_TEST_MODEL: ConvNextTestSpec = { hiddenSizes: [16, 32, 48, 64], depths: [1, 1, 2, 1], seed: 5 };

/** The released shapes (config.json of facebook/dinov3-convnext-<size>-pretrain-lvd1689m). */
export const CONVNEXT_RELEASED_SHAPES: Readonly<Record<'tiny' | 'small' | 'base' | 'large', Omit<ConvNextTestSpec, 'seed'>>> = {
  tiny: { hiddenSizes: [96, 192, 384, 768], depths: [3, 3, 9, 3] },
  small: { hiddenSizes: [96, 192, 384, 768], depths: [3, 3, 27, 3] },
  base: { hiddenSizes: [128, 256, 512, 1024], depths: [3, 3, 27, 3] },
  large: { hiddenSizes: [192, 384, 768, 1536], depths: [3, 3, 27, 3] },
};

type Tensors = Record<string, { shape: number[]; data: Float32Array }>;

export function convNextTestTensors(spec: ConvNextTestSpec): Tensors {
  const rand = seededRandom(spec.seed);
  const t: Tensors = {};
  const add = (name: string, shape: number[], data: Float32Array) => (t[name] = { shape, data });
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  // Weights with unit-variance outputs for unit-variance inputs (std 1/sqrt(fan in)).
  const weight = (name: string, shape: number[], fanIn: number) => add(`${name}.weight`, shape, normal(rand, size(shape), 1 / Math.sqrt(fanIn)));
  const bias = (name: string, n: number) => add(`${name}.bias`, [n], normal(rand, n, 0.02));
  const norm = (name: string, n: number) => {
    add(`${name}.weight`, [n], normal(rand, n, 0.1, 1));
    bias(name, n);
  };
  let inn = 3;
  spec.hiddenSizes.forEach((width, s) => {
    const down = `stages.${s}.downsample_layers`;
    const k = s === 0 ? 4 : 2;
    if (s > 0) norm(`${down}.0`, inn);
    const conv = `${down}.${s === 0 ? 0 : 1}`;
    weight(conv, [width, inn, k, k], inn * k * k);
    bias(conv, width);
    if (s === 0) norm(`${down}.1`, width);
    for (let l = 0; l < spec.depths[s]!; l++) {
      const p = `stages.${s}.layers.${l}`;
      weight(`${p}.depthwise_conv`, [width, 1, 7, 7], 49);
      bias(`${p}.depthwise_conv`, width);
      norm(`${p}.layer_norm`, width);
      weight(`${p}.pointwise_conv1`, [4 * width, width], width);
      bias(`${p}.pointwise_conv1`, 4 * width);
      weight(`${p}.pointwise_conv2`, [width, 4 * width], 4 * width);
      bias(`${p}.pointwise_conv2`, width);
      add(`${p}.gamma`, [width], uniform(rand, width, 0.1, 0.5));
    }
    inn = width;
  });
  norm('layer_norm', inn);
  return t;
}

export async function writeConvNextTestCheckpoint(dir: string, spec: ConvNextTestSpec): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    _dinofeat_note: NOT_A_REAL_MODEL,
    architectures: ['DINOv3ConvNextModel'],
    model_type: 'dinov3_convnext',
    hidden_sizes: spec.hiddenSizes,
    depths: spec.depths,
    num_channels: 3,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-6,
    layer_scale_init_value: 1e-6,
    drop_path_rate: 0.0,
    image_size: 224,
  };
  const preprocessor = {
    image_processor_type: 'DINOv3ViTImageProcessorFast',
    do_resize: true, size: { height: 224, width: 224 }, resample: 2,
    do_rescale: true, rescale_factor: 1 / 255,
    do_normalize: true, image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225],
  };
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2).replace('"drop_path_rate": 0,', '"drop_path_rate": 0.0,')}\n`);
  fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'README.md'), `# dinofeat test model\n\n${NOT_A_REAL_MODEL}.\nSeed ${spec.seed}; shapes as in a DINOv3 ConvNeXt (widths ${spec.hiddenSizes.join(', ')}, depths ${spec.depths.join(', ')}).\n`);
  const tensors = Object.fromEntries(Object.entries(convNextTestTensors(spec)).map(([k, v]) => [k, { ...v, dtype: 'F32' as const }]));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt', note: NOT_A_REAL_MODEL });
}
