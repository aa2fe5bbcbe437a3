/**
 * The only place that loads onnxruntime-node. Telemetry is switched off before the native
 * binding loads (it otherwise writes a device id and an event database under ~/.cache).
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';
const ort = await import('onnxruntime-node');
export default ort;
export type { InferenceSession, Tensor } from 'onnxruntime-node';
// Failures reach the user through thrown errors, as one line; ORT's own log would repeat them
// as multi-line noise (e.g. a missing CUDA provider library).
ort.env.logLevel = 'fatal';
