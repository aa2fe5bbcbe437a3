/**
 * The resampler's WebAssembly SIMD kernel (resample.wat, assembled into resample-wasm.ts): one
 * instance and one memory per thread, compiled on first use. Node ≥ 20 always has SIMD128, so
 * there is no scalar path; relaxed SIMD (fused multiply-add) is not used, it is not everywhere.
 */
import { instantiateKernel } from '../core/wasm.js';
import { RESAMPLE_WASM } from './resample-wasm.js';

interface Exports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  vertical(rows: number, rowBytes: number, taps: number, bytes: number, weightsA: number, accA: number, freshA: number, weightsB: number, accB: number, freshB: number): void;
  horizontal(lineA: number, lineB: number, outs: number, starts: number, sizes: number, weights: number, stride: number, norm: number, eightBit: number, dstA: number, dstB: number): void;
}

/** Views of the kernel's memory, valid until the next `reserve` (growing replaces the buffer). */
export interface KernelMemory {
  u8: Uint8Array;
  i16: Int16Array;
  i32: Int32Array;
  f32: Float32Array;
}

export class ResampleKernel {
  private views: KernelMemory | undefined;

  constructor(private readonly wasm: Exports) {}

  /** At least `bytes` of memory, from offset 0. */
  reserve(bytes: number): KernelMemory {
    const { memory } = this.wasm;
    const missing = bytes - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
    const b = memory.buffer;
    if (this.views?.u8.buffer !== b) this.views = { u8: new Uint8Array(b), i16: new Int16Array(b), i32: new Int32Array(b), f32: new Float32Array(b) };
    return this.views;
  }

  /**
   * resample.wat's `vertical`, for each of lines A and B (B may be A, a line alone): acc (int32,
   * from 0 when `fresh`) += Σ_j weights[j] (int16) · rows[j·rowBytes + x], j < taps (at least 1), x <
   * bytes (offsets in bytes).
   */
  vertical(rows: number, rowBytes: number, taps: number, bytes: number, weightsA: number, accA: number, freshA: boolean, weightsB: number, accB: number, freshB: boolean): void {
    this.wasm.vertical(rows, rowBytes, taps, bytes, weightsA, accA, freshA ? 1 : 0, weightsB, accB, freshB ? 1 : 0);
  }

  /**
   * resample.wat's `horizontal`, for each of lines A and B (B may be A, a line alone): one RGB
   * int32 line of the y pass filtered in float32, times the y weights' unit, and normalised
   * (`norm`: scale and shift vectors, unit splat; `eightBit`: clamp and round first) into three
   * planes of `outs` floats at its `dst`.
   */
  horizontal(lineA: number, lineB: number, outs: number, starts: number, sizes: number, weights: number, stride: number, norm: number, eightBit: boolean, dstA: number, dstB: number): void {
    this.wasm.horizontal(lineA, lineB, outs, starts, sizes, weights, stride, norm, eightBit ? 1 : 0, dstA, dstB);
  }
}

let kernel: ResampleKernel | undefined;

export function resampleKernel(): ResampleKernel {
  if (!kernel) {
    kernel = new ResampleKernel(instantiateKernel<Exports>(RESAMPLE_WASM));
  }
  return kernel;
}
