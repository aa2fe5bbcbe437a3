/**
 * The stage that feeds the model: prepared images are grouped into batches per bucket, batches go
 * to the model so that it never waits, and each answer is split into rows for the writer.
 *
 * The model holds at most MODEL_QUEUE_DEPTH batches, one only while its calls take SLOW_CALL_MS or
 * more (and until the first call has been timed). Full batches go whenever it has room. A
 * partial batch goes only to an idle model, and only once no image is on its way from the image
 * stage (`coming` / `arrived`) or a batch's worth of images waits over several buckets: when decoding is
 * the slow stage those images are a few milliseconds off, and each call costs the host its own
 * work (messages, the runtime's threads woken, a split, an encode), so filling the batch is
 * cheaper than calling at once; with nothing on its way, waiting would only idle the model. (With
 * calls at once, a decode-bound run over 960 camera-sized JPEGs at 256² made 600 calls of one
 * image, 125 of two and 38 of three; docs/speed.md.) While
 * the model is busy a partial batch keeps filling, since the image stage prepares only as far ahead
 * as the model needs (lookahead.ts) and a batch queued early would go part-empty for nothing. Full
 * batches wait their turn as their images' pixels, so a batch tensor exists only for the batches
 * at the model.
 */
import type { FeatureRow } from '../shard/schema.js';
import type { Origin } from '../source/types.js';
import { BufferStock } from '../core/buffer-stock.js';
import { MODEL_INPUT, tokenOutputs } from '../model/contract.js';
import type { ModelInfo } from '../model/info.js';
import type { InputsBack, WireTensor } from '../model/ort-worker.js';
import { poolPatches } from '../model/pool.js';
import { splitOutputs, TokenLayoutError, type ImageTokens } from '../model/split.js';
import { Batcher } from './batcher.js';
import type { PreparedPixels } from './prepare.js';
import type { ModelQueueState } from './lookahead.js';
import { MODEL_QUEUE_DEPTH, SLOW_CALL_MS } from './sizing.js';
import { FatalError, TaskGroup, type FirstError } from './tasks.js';

/** What the run needs of a model session (an OrtWorker in extract, a scripted model in tests). */
export interface ModelRunner {
  /** `inputsBack` takes the feeds' buffers once the model is done with them (an OrtWorker gives them back). */
  run(feeds: Record<string, WireTensor>, outputs?: string[], inputsBack?: InputsBack): Promise<Record<string, WireTensor>>;
}

/** One image on its way to the model, with the provenance its row will carry. */
export interface PendingImage extends PreparedPixels {
  key: string;
  sha256: string;
  /** How the image is named to the user (its path). */
  display: string;
  /** Where its bytes came from, journaled with its row. */
  origin: Origin;
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
  /** Takes pixels the model no longer needs, to be reused for later images (ImagePreparer.recycle). */
  recycle?: (plane: Float32Array) => void;
  /** Called whenever batches reach the model or leave it (the image stage paces itself on it: lookahead.ts). */
  onQueueChange?: () => void;
  /** Calls at least this long keep one batch at the model (default SLOW_CALL_MS). */
  slowCallMs?: number;
}

const NO_PIXELS = new Float32Array(0);

/**
 * The model inputs of a batch, in order: each image's pixels, then its flipped copy when it has
 * one. Each image lets go of its tensors here, so an image in flight is held once.
 */
function takePlanes(batch: PendingImage[]): Float32Array[] {
  return batch.flatMap((p) => {
    const planes = p.mirrored ? [p.pixels, p.mirrored] : [p.pixels];
    p.pixels = NO_PIXELS;
    p.mirrored = undefined;
    return planes;
  });
}

/**
 * The batch tensor kept for the next batch: it comes back as the model answers and the next batch
 * is copied into it at once, so a run of full batches cycles one tensor per batch at the model
 * instead of leaving each to the ONNX Runtime thread's collector and faulting in a fresh one.
 * Whatever its size: at 1024² (50 MB a batch of four, one batch at the slow model) a fresh tensor
 * each call left the dead ones to be collected late, and keeping it lowered extract's peak
 * (24 camera-sized JPEGs, batch 4, runs in turns: 1176–1259 → 1064–1184 MiB, the same speed; docs/speed.md).
 * One only, so a run over several bucket shapes keeps at most one tensor of another shape.
 */
const KEPT_BATCHES = 1;

/** One model call's input, and where its buffer goes once the model gives it back. */
interface NextCall {
  feeds: Record<string, WireTensor>;
  inputsBack?: InputsBack;
}

export class ModelScheduler {
  private readonly batcher: Batcher<PendingImage>;
  /** Full batches not yet handed to the model, in the order they filled. */
  private readonly ready: PendingImage[][] = [];
  private atModel = 0;
  /** Whether the model's last call was short, so that a second batch should wait at it. */
  private shortCalls = false;
  private lastAnswer = 0;
  /** Images announced by `coming` and not yet `arrived`. */
  private onItsWay = 0;
  private readonly inferring: TaskGroup;
  private readonly batchBuffers = new BufferStock(KEPT_BATCHES, Number.POSITIVE_INFINITY);

  constructor(private readonly o: SchedulerOptions) {
    this.batcher = new Batcher<PendingImage>(o.batchSize, o.maxWaiting);
    this.inferring = new TaskGroup(o.failure);
  }

  add(image: PendingImage): void {
    this.ready.push(...this.batcher.add(image));
    this.feed();
  }

  /** One more image is on its way from the image stage: it will reach `add`, or fail; either way `arrived` follows. */
  coming(): void {
    this.onItsWay++;
  }

  /** An image announced by `coming` was added or failed; with none left on its way, a partial batch may go to an idle model. */
  arrived(): void {
    if (--this.onItsWay === 0) this.feed();
  }

  /** No more images: what waits in partial batches goes now; resolves when every batch is written. */
  async finish(): Promise<void> {
    this.ready.push(...this.batcher.drain());
    this.feed();
    await this.inferring.settle();
  }

  get queue(): ModelQueueState {
    return { full: this.atModel >= this.depth, waiting: this.batcher.size + this.ready.reduce((n, b) => n + b.length, 0) };
  }

  private get depth(): number {
    return this.shortCalls ? MODEL_QUEUE_DEPTH : 1;
  }

  /**
   * Whether an idle model takes the fullest partial batch now: once no image is on its way, or
   * once a batch's worth waits in all (several buckets, none full: the images on their way may be
   * of yet another, so waiting for them would hold the model for up to maxWaiting images).
   * finish() drains the partial batches into `ready` anyway.
   */
  private partialMayGo(): boolean {
    return this.onItsWay === 0 || this.batcher.size >= this.o.batchSize;
  }

  /** Tops the model's queue up: full batches first, then, when the model is idle and partialMayGo, the fullest partial one. */
  private feed(): void {
    while (!this.o.failure.failed && this.atModel < this.depth) {
      const batch = this.ready.shift() ?? (this.atModel === 0 && this.partialMayGo() ? this.batcher.takeFullest() : undefined);
      if (!batch) break;
      this.atModel++; // counted before infer's first await, so this loop sees it
      this.inferring.add(this.infer(batch));
    }
    this.o.onQueueChange?.();
  }

  /**
   * One batch on the model, at most batchSize planes per call (a batch with flipped copies takes
   * two calls, so an int8 model still sees one image at a time); its place at the model is given
   * back as soon as it answers.
   */
  private async runModel(planes: Float32Array[], height: number, width: number): Promise<Array<Record<string, WireTensor>>> {
    try {
      const answers = [];
      while (planes.length) {
        const call = this.nextCall(planes, height, width);
        const sent = performance.now();
        answers.push(await this.o.model.run(call.feeds, tokenOutputs(this.o.info), call.inputsBack));
        // Calls run one after another, answered in order: a call sent while another ran began when that one answered.
        const answered = performance.now();
        this.shortCalls = answered - Math.max(sent, this.lastAnswer) < (this.o.slowCallMs ?? SLOW_CALL_MS);
        this.lastAnswer = answered;
      }
      return answers;
    } finally {
      this.atModel--;
      this.feed();
    }
  }

  /**
   * The next call's input, its planes taken off `planes`: a single plane goes as it is; several are
   * copied into a kept batch tensor and go back at once to be later images' pixels. Made outside
   * the caller's frame, so that no copied plane is held by the awaiting function.
   */
  private nextCall(planes: Float32Array[], height: number, width: number): NextCall {
    const chunk = planes.splice(0, this.o.batchSize);
    const { recycle } = this.o;
    let data: Float32Array;
    let inputsBack: InputsBack | undefined;
    if (chunk.length === 1) {
      data = chunk[0]!;
      if (recycle) inputsBack = (buffers) => buffers.forEach((b) => recycle(new Float32Array(b)));
    } else {
      const size = chunk[0]!.length;
      const bytes = size * chunk.length * Float32Array.BYTES_PER_ELEMENT;
      data = new Float32Array(this.batchBuffers.take(bytes));
      chunk.forEach((plane, b) => data.set(plane, b * size));
      if (recycle) chunk.forEach(recycle);
      inputsBack = (buffers) => buffers.forEach((b) => this.batchBuffers.give(b));
    }
    return { feeds: { [MODEL_INPUT]: { type: 'float32', data, dims: [chunk.length, 3, height, width] } }, inputsBack };
  }

  private async infer(batch: PendingImage[]): Promise<void> {
    const first = batch[0]!;
    const { patchSize, hiddenSize } = this.o.info;
    const gridH = Math.floor(first.bucketHeight / patchSize);
    const gridW = Math.floor(first.bucketWidth / patchSize);
    const pool = this.o.pool ?? 1;
    const withCopy = batch.map((p) => p.mirrored !== undefined);
    let groups: ImageTokens[];
    try {
      const answers = await this.runModel(takePlanes(batch), first.bucketHeight, first.bucketWidth);
      groups = answers.flatMap((a) => splitOutputs(a, this.o.info, gridH, gridW));
    } catch (e) {
      if (e instanceof TokenLayoutError) throw new FatalError(`${e.message}: the model does not fit its metadata; check --patch-size/--num-registers or reconvert it`);
      return this.o.onBatchFailed(batch, e instanceof Error ? e.message.split('\n')[0]! : String(e));
    }
    const pooled = (patches: Float32Array) => poolPatches(patches, gridH, gridW, hiddenSize, pool);
    // Intermediate layers are pooled as the last one is; a flipped copy has none (extract refuses
    // --flip with them), so they are only kept for the image itself.
    const features = (g: ImageTokens) => ({
      cls: g.cls, patches: pooled(g.patches),
      ...(this.o.keepRegisters ? { registers: g.registers } : {}),
    });
    const layers = (g: ImageTokens) => (g.layers.length ? { layers: g.layers.map((l) => ({ layer: l.layer, cls: l.cls, patches: pooled(l.patches) })) } : {});
    const answer = groups.values();
    const rows = batch.map((p, b): FeatureRow => {
      // Planes were taken in this order: an image, then its flipped copy when it had one.
      const own = answer.next().value!;
      const copy = withCopy[b] ? answer.next().value! : undefined;
      return {
        key: p.key, sha256: p.sha256, width: p.width, height: p.height,
        bucketWidth: p.bucketWidth, bucketHeight: p.bucketHeight, gridH: gridH / pool, gridW: gridW / pool,
        cropX: p.crop.x, cropY: p.crop.y, cropW: p.crop.w, cropH: p.crop.h,
        ...features(own), ...layers(own),
        // A flip is always stated, so a shard without the flip column refuses it rather than losing it.
        ...(copy || p.flip ? { flip: p.flip === true } : {}),
        ...(copy ? { mirrored: features(copy) } : {}),
      };
    });
    await this.o.onRows(batch, rows);
  }
}
