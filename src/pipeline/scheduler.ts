/**
 * The stage that feeds the model: prepared images are grouped into batches per bucket, batches go
 * to the model so that it never waits, and each answer is split into rows for the writer.
 *
 * The model holds at most MODEL_QUEUE_DEPTH batches. When it holds fewer and no batch is full, the
 * fullest partial batch goes at once rather than waiting to fill: when decoding keeps up, batches
 * are full anyway; when it does not, waiting would only idle the model. Full batches wait their
 * turn as their images' pixels, so a batch tensor exists only for the batches at the model.
 */
import type { FeatureRow } from '../shard/schema.js';
import { MODEL_INPUT, MODEL_OUTPUT } from '../model/contract.js';
import type { ModelInfo } from '../model/info.js';
import type { WireTensor } from '../model/ort-worker.js';
import { poolPatches } from '../model/pool.js';
import { splitTokens, TokenLayoutError } from '../model/split.js';
import { Batcher } from './batcher.js';
import type { PreparedPixels } from './prepare.js';
import { MODEL_QUEUE_DEPTH } from './sizing.js';
import { FatalError, TaskGroup, type FirstError } from './tasks.js';

/** What the run needs of a model session (an OrtWorker in extract, a scripted model in tests). */
export interface ModelRunner {
  run(feeds: Record<string, WireTensor>, outputs?: string[]): Promise<Record<string, WireTensor>>;
}

/** One image on its way to the model, with the provenance its row will carry. */
export interface PendingImage extends PreparedPixels {
  key: string;
  sha256: string;
  /** How the image is named to the user (its path). */
  display: string;
  /** Tensor shape, '<width>x<height>': images batch together only with their own bucket. */
  bucketKey: string;
}

export interface SchedulerOptions {
  model: ModelRunner;
  info: ModelInfo;
  batchSize: number;
  /** Images held in partial batches before the fullest goes early (see sizing.ts). */
  maxWaiting: number;
  keepRegisters: boolean;
  /** --pool: patches averaged pool×pool on the grid before they are stored (default 1: as the model gives them). */
  pool?: number;
  /** Takes a batch's rows; resolves once they are written (the batch's task lasts until then). */
  onRows(batch: PendingImage[], rows: FeatureRow[]): Promise<void>;
  /** The model failed on this batch (not on its contract): each image is a failure, the run goes on. */
  onBatchFailed(batch: PendingImage[], reason: string): Promise<void>;
  failure: FirstError;
}

const NO_PIXELS = new Float32Array(0);

/**
 * A batch as one input tensor, built when the model is about to take it. Each image lets go of its
 * own pixels here, so an image in flight is held once; a batch of one is sent as it is, uncopied.
 */
function batchTensor(batch: PendingImage[]): Float32Array {
  if (batch.length === 1) {
    const only = batch[0]!.pixels;
    batch[0]!.pixels = NO_PIXELS;
    return only;
  }
  const plane = batch[0]!.pixels.length;
  const input = new Float32Array(plane * batch.length);
  batch.forEach((p, b) => {
    input.set(p.pixels, b * plane);
    p.pixels = NO_PIXELS;
  });
  return input;
}

export class ModelScheduler {
  private readonly batcher: Batcher<PendingImage>;
  /** Full batches not yet handed to the model, in the order they filled. */
  private readonly ready: PendingImage[][] = [];
  private atModel = 0;
  private readonly inferring: TaskGroup;

  constructor(private readonly o: SchedulerOptions) {
    this.batcher = new Batcher<PendingImage>(o.batchSize, o.maxWaiting);
    this.inferring = new TaskGroup(o.failure);
  }

  add(image: PendingImage): void {
    this.ready.push(...this.batcher.add(image));
    this.feed();
  }

  /** No more images: what waits in partial batches goes now; resolves when every batch is written. */
  async finish(): Promise<void> {
    this.ready.push(...this.batcher.drain());
    this.feed();
    await this.inferring.settle();
  }

  /** Tops the model's queue up: full batches first, then the fullest partial one. */
  private feed(): void {
    while (!this.o.failure.failed && this.atModel < MODEL_QUEUE_DEPTH) {
      const batch = this.ready.shift() ?? this.batcher.takeFullest();
      if (!batch) return;
      this.atModel++; // counted before infer's first await, so this loop sees it
      this.inferring.add(this.infer(batch));
    }
  }

  /** One batch on the model; its place at the model is given back as soon as it answers. */
  private async runModel(input: Float32Array, dims: number[]): Promise<WireTensor> {
    try {
      return (await this.o.model.run({ [MODEL_INPUT]: { type: 'float32', data: input, dims } }, [MODEL_OUTPUT]))[MODEL_OUTPUT]!;
    } finally {
      this.atModel--;
      this.feed();
    }
  }

  private async infer(batch: PendingImage[]): Promise<void> {
    const first = batch[0]!;
    const { patchSize, hiddenSize } = this.o.info;
    const gridH = Math.floor(first.bucketHeight / patchSize);
    const gridW = Math.floor(first.bucketWidth / patchSize);
    const pool = this.o.pool ?? 1;
    let groups: ReturnType<typeof splitTokens>;
    try {
      const hidden = await this.runModel(batchTensor(batch), [batch.length, 3, first.bucketHeight, first.bucketWidth]);
      groups = splitTokens(hidden.data as Float32Array, hidden.dims, this.o.info, gridH, gridW);
    } catch (e) {
      if (e instanceof TokenLayoutError) throw new FatalError(`${e.message}: the model does not fit its metadata; check --patch-size/--num-registers or reconvert it`);
      return this.o.onBatchFailed(batch, e instanceof Error ? e.message.split('\n')[0]! : String(e));
    }
    const rows = batch.map((p, b): FeatureRow => ({
      key: p.key, sha256: p.sha256, width: p.width, height: p.height,
      bucketWidth: p.bucketWidth, bucketHeight: p.bucketHeight, gridH: gridH / pool, gridW: gridW / pool,
      cropX: p.crop.x, cropY: p.crop.y, cropW: p.crop.w, cropH: p.crop.h,
      cls: groups[b]!.cls, patches: poolPatches(groups[b]!.patches, gridH, gridW, hiddenSize, pool),
      ...(this.o.keepRegisters ? { registers: groups[b]!.registers } : {}),
    }));
    await this.o.onRows(batch, rows);
  }
}
