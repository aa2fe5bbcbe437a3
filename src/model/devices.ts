/**
 * Devices = ONNX Runtime execution providers that the installed onnxruntime-node offers on this
 * platform. Whether one really works is only known by starting a session with it (CUDA needs
 * provider libraries the npm package does not ship, plus CUDA 12 / cuDNN 9 on the host).
 */
import os from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import { UserError } from '../core/errors.js';
import { DataType, GraphBuilder, encodeModel } from '../onnx/builder.js';
import ort from './ort.js';
import { OrtWorker, SessionStartError } from './ort-worker.js';

export interface DeviceInfo {
  name: string;
  /** Shipped inside the npm package (true) or needing an extra install (false). */
  bundled: boolean;
}

export function listDevices(): DeviceInfo[] {
  return ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
}

export const HOW_TO_GET: Record<string, string> = {
  cuda: 'install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (downloads the CUDA provider) on a host with CUDA 12 and cuDNN 9',
  tensorrt: 'install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 and TensorRT 10 on the host',
  webgpu: 'needs a Vulkan driver (libvulkan.so.1) and a GPU adapter',
};

export interface SessionSettings {
  /** The execution provider. */
  device: string;
  /** Its card (cuda, tensorrt, dml; device-choice.ts picks it); undefined: the provider's default. */
  deviceId?: number;
  /** The local rank that chose the card (not --device), for the error line when it does not start. */
  cardChosenBy?: string;
  /** Threads for one inference (intra-op); default: all cores. */
  threads?: number;
  /** Large models: memory-map weights instead of pre-packing copies (halves peak RSS). */
  lowMemory?: boolean;
}

export function sessionOptions(s: SessionSettings): InferenceSession.SessionOptions {
  // onnxruntime-node reads deviceId for every provider that has cards (cuda, tensorrt, dml).
  const onCard: InferenceSession.ExecutionProviderOption & { deviceId?: number } = { name: s.device, deviceId: s.deviceId };
  return {
    executionProviders: [s.deviceId === undefined ? s.device : onCard],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: s.threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // Failures reach the user as one line through the thrown error; ORT's own log would repeat them.
    logSeverityLevel: 4,
    enableCpuMemArena: true,
    enableMemPattern: true,
    extra: {
      session: {
        // Idle inference threads sleep instead of spinning: decoding and writing share the cores,
        // and spinning took CPU from them (decode-bound run: 81 → 99 img/s with it off; the model
        // alone measured no slower; README, Speed).
        intra_op: { allow_spinning: '0' },
        ...(s.lowMemory ? { disable_prepacking: '1' } : {}),
      },
    },
  };
}

/** Starts a session for `model` in a worker thread, turning device failures into one clear line. */
export async function startSession(model: string | Uint8Array, settings: SessionSettings, label: string): Promise<OrtWorker> {
  const known = listDevices();
  if (!known.some((d) => d.name === settings.device)) {
    throw new UserError(`--device ${settings.device} is not offered by this onnxruntime-node (offered: ${known.map((d) => d.name).join(', ')})`);
  }
  try {
    return await OrtWorker.start({ model, options: sessionOptions(settings) });
  } catch (e) {
    if (!(e instanceof SessionStartError)) throw e;
    if (settings.device !== 'cpu') {
      const how = HOW_TO_GET[settings.device] ?? 'see the onnxruntime-node documentation';
      const card = settings.deviceId === undefined ? '' : `:${settings.deviceId}`;
      const origin = settings.cardChosenBy ? ` (card chosen by ${settings.cardChosenBy}; pass --device ${settings.device}:N or set CUDA_VISIBLE_DEVICES to choose another)` : '';
      throw new UserError(`--device ${settings.device}${card}${origin} is not available here (${e.message.split('\n')[0]}); use --device cpu, or ${how}`);
    }
    throw new UserError(`cannot load model ${label}: ${e.message.split('\n')[0]}; check that it is an ONNX file (dinofeat convert makes one)`);
  }
}

export interface DeviceStatus extends DeviceInfo {
  /** A session started on it here. */
  available: boolean;
  /** When it did not: what it needs. */
  howToGet?: string;
}

/** A one-node graph: enough to see whether a provider starts. */
function identityModel(): Uint8Array {
  const g = new GraphBuilder('probe');
  const x = g.input('x', DataType.FLOAT, [1]);
  g.rename(g.op('Identity', [x]), 'y');
  g.output('y', DataType.FLOAT, [1]);
  return encodeModel(g, { opsets: { '': 18 } });
}

/** Every device this onnxruntime-node offers, and whether a session really starts on it here. */
export async function probeDevices(): Promise<DeviceStatus[]> {
  const model = identityModel();
  const out: DeviceStatus[] = [];
  for (const d of listDevices()) {
    try {
      const s = await startSession(model, { device: d.name, threads: 1 }, 'probe');
      await s.close();
      out.push({ ...d, available: true });
    } catch {
      out.push({ ...d, available: false, howToGet: HOW_TO_GET[d.name] });
    }
  }
  return out;
}
