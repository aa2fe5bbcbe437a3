/**
 * Instantiates one of the project's WebAssembly SIMD kernels (*.wat, assembled by
 * scripts/build-wasm.mjs into base64 constants): compiled and instantiated synchronously, one
 * instance per caller. Node ≥ 20 always has SIMD128, so no kernel needs a scalar fallback.
 */

/** The part of the WebAssembly API used here: this project's lib (ES2022, Node types) does not declare it. */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
};

export function instantiateKernel<Exports>(base64: string): Exports {
  return new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(base64, 'base64'))).exports as Exports;
}
