/**
 * Checkpoints dinofeat knows: Hugging Face ids with their size and licence, for `dinofeat models`
 * and for `pull` to say what it is fetching. Sizes are from the released config.json files
 * (docs/model-architecture.md §4, §6 and §8); parameter counts from the model cards (ConvNeXt: as
 * counted, below). `pull` accepts other ids too.
 */
import fs from 'node:fs';
import type { ModelFamily } from '../model/info.js';
import type { NormPreset } from '../model/normalisation.js';
import { precisionOfModelFile, pulledRepoDir } from './layout.js';

export interface KnownModel {
  repoId: string;
  family: ModelFamily;
  /** e.g. ViT-S/16, ConvNeXt-T. */
  arch: string;
  /** Width of the output tokens (a ConvNeXt's last stage). */
  hiddenSize: number;
  /** Transformer layers, or a ConvNeXt's blocks over all stages. */
  layers: number;
  /** Millions of parameters. */
  paramsM: number;
  /** Pixels per output position: a ViT's patch, a ConvNeXt's total stride. */
  patchSize: number;
  registers: number;
  licence: string;
  /** The Hub asks users to accept the licence before it serves the files (HF_TOKEN needed). */
  gated: boolean;
  note?: string;
  /**
   * The normalisation preset Meta gives for the checkpoint, when it is not ImageNet's (what the
   * processor configs carry, and what a conversion uses unless --norm says otherwise).
   */
  trainedNorm?: NormPreset;
}

const DINOV3_LICENCE = 'DINOv3 License';

function dinov3(name: string, arch: string, hiddenSize: number, layers: number, paramsM: number): KnownModel {
  const satellite = name.endsWith('-sat493m');
  return {
    repoId: `facebook/dinov3-${name}`, family: 'dinov3', arch, hiddenSize, layers, paramsM, patchSize: 16, registers: 4, licence: DINOV3_LICENCE, gated: true,
    ...(satellite ? { note: 'satellite imagery', trainedNorm: 'sat493m' as const } : {}),
  };
}

function dinov2(name: string, arch: string, hiddenSize: number, layers: number, paramsM: number, registers: number): KnownModel {
  const repo = registers > 0 ? `facebook/dinov2-with-registers-${name}` : `facebook/dinov2-${name}`;
  return { repoId: repo, family: 'dinov2', arch, hiddenSize, layers, paramsM, patchSize: 14, registers, licence: 'Apache-2.0', gated: false };
}

/** Stride 32 (a 4x4 stem, three 2x2 downsamplings), no registers; blocks per stage [3, 3, 9 or 27, 3]. */
function convnext(size: string, letter: string, hiddenSize: number, layers: number, paramsM: number): KnownModel {
  return { repoId: `facebook/dinov3-convnext-${size}-pretrain-lvd1689m`, family: 'dinov3-convnext', arch: `ConvNeXt-${letter}`, hiddenSize, layers, paramsM, patchSize: 32, registers: 0, licence: DINOV3_LICENCE, gated: true };
}

const DINOV2_SIZES: [string, string, number, number, number][] = [
  ['small', 'ViT-S/14', 384, 12, 21],
  ['base', 'ViT-B/14', 768, 12, 86],
  ['large', 'ViT-L/14', 1024, 24, 300],
  ['giant', 'ViT-g/14', 1536, 40, 1100],
];

export const KNOWN_MODELS: readonly KnownModel[] = [
  dinov3('vits16-pretrain-lvd1689m', 'ViT-S/16', 384, 12, 21),
  dinov3('vits16plus-pretrain-lvd1689m', 'ViT-S+/16', 384, 12, 29),
  dinov3('vitb16-pretrain-lvd1689m', 'ViT-B/16', 768, 12, 86),
  dinov3('vitl16-pretrain-lvd1689m', 'ViT-L/16', 1024, 24, 300),
  dinov3('vitl16-pretrain-sat493m', 'ViT-L/16', 1024, 24, 300),
  dinov3('vith16plus-pretrain-lvd1689m', 'ViT-H+/16', 1280, 32, 840),
  dinov3('vit7b16-pretrain-lvd1689m', 'ViT-7B/16', 4096, 40, 6716),
  dinov3('vit7b16-pretrain-sat493m', 'ViT-7B/16', 4096, 40, 6716),
  // Parameters as Hugging Face's DINOv3ConvNextModel counts them at these shapes (the model cards round them).
  convnext('tiny', 'T', 768, 18, 28),
  convnext('small', 'S', 768, 36, 49),
  convnext('base', 'B', 1024, 36, 88),
  convnext('large', 'L', 1536, 36, 196),
  ...DINOV2_SIZES.map(([n, a, h, l, p]) => dinov2(n, a, h, l, p, 0)),
  ...DINOV2_SIZES.map(([n, a, h, l, p]) => dinov2(n, a, h, l, p, 4)),
];

/** Hub ids are case-insensitive. */
export function findKnownModel(repoId: string): KnownModel | undefined {
  const id = repoId.toLowerCase();
  return KNOWN_MODELS.find((m) => m.repoId.toLowerCase() === id);
}

const formatParams = (m: KnownModel) => (m.paramsM >= 1000 ? `${(m.paramsM / 1000).toFixed(1)}B` : `${m.paramsM}M`);

const FAMILY_NAMES: Record<ModelFamily, string> = { dinov3: 'DINOv3', 'dinov3-convnext': 'DINOv3', dinov2: 'DINOv2' };

/** One line about a known model, for pull's output (and a second on its normalisation, when Meta gives other constants). */
export function describeModel(m: KnownModel): string {
  const depth = m.family === 'dinov3-convnext' ? `${m.layers} blocks, stride ${m.patchSize}` : `${m.layers} layers`;
  const line = `${FAMILY_NAMES[m.family]} ${m.arch}${m.note ? ` (${m.note})` : ''}, hidden ${m.hiddenSize}, ${depth}, ${formatParams(m)} parameters, ${m.licence}${m.gated ? ' (gated: accept it on the Hub and set HF_TOKEN)' : ''}`;
  return m.trainedNorm
    ? `${line}\n  trained with the ${m.trainedNorm} mean/std: pass --norm ${m.trainedNorm} to use them; without it the preprocessor config's are used (README: satellite checkpoints)`
    : line;
}

/** Precisions already converted under $DINOFEAT_HOME for any revision of the repo. */
export function pulledPrecisions(repoId: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const repoDir = pulledRepoDir(repoId, env);
  if (!fs.existsSync(repoDir)) return [];
  const found = new Set<string>();
  for (const entry of fs.readdirSync(repoDir, { withFileTypes: true, recursive: true })) {
    const precision = precisionOfModelFile(entry.name);
    if (precision && entry.isFile()) found.add(precision);
  }
  return [...found].sort();
}

/** The `dinofeat models` table. */
export function formatRegistry(env: NodeJS.ProcessEnv = process.env): string {
  const rows = KNOWN_MODELS.map((m) => {
    const pulled = pulledPrecisions(m.repoId, env).join(',') || '-';
    return [m.repoId, m.arch, String(m.hiddenSize), String(m.layers), formatParams(m), String(m.patchSize), String(m.registers), m.gated ? `${m.licence} (gated)` : m.licence, pulled];
  });
  const header = ['repo', 'arch', 'hidden', 'layers', 'params', 'patch', 'registers', 'licence', 'pulled'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => x.padEnd(widths[c]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line), '', 'dinofeat pull <repo> fetches and converts one; other Hugging Face DINOv3 / DINOv2 checkpoints work too.'].join('\n') + '\n';
}
