/**
 * Which execution provider and which card a run uses, from `--device` (`cpu`, `cuda`, `cuda:3`) and
 * the launcher's environment. Eight workers started on an 8-GPU node (torchrun, srun) all see
 * `--device cuda`; each one's local rank (LOCAL_RANK, else SLURM_LOCALID) picks its card, so they do
 * not all land on card 0. An explicit `cuda:N` always wins.
 */
import fs from 'node:fs';
import { UserError } from '../core/errors.js';

/** Providers whose ONNX Runtime options take a card index (onnxruntime-node passes `deviceId` to these). */
const CARD_PROVIDERS: ReadonlySet<string> = new Set(['cuda', 'tensorrt', 'dml']);

export interface DeviceChoice {
  /** The execution provider, as ONNX Runtime names it: what the cache records. */
  provider: string;
  /** The card; undefined: the provider's default (card 0). */
  deviceId?: number;
  /** The local rank that chose the card, for messages ('LOCAL_RANK=3 of 8 cards'); undefined when --device named it. */
  chosenBy?: string;
}

/** Local rank of this process on its node: torch launchers' LOCAL_RANK, then SLURM's task id on the node. */
function localRank(env: NodeJS.ProcessEnv): { rank: number; name: string } | undefined {
  for (const name of ['LOCAL_RANK', 'SLURM_LOCALID']) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UserError(`environment variable ${name}=${v} is not a non-negative integer`);
    return { rank: n, name };
  }
  return undefined;
}

/**
 * Cards this process can use, when known without loading CUDA: the entries of CUDA_VISIBLE_DEVICES
 * (a launcher that binds one card per task leaves one), else the NVIDIA driver's list under /proc.
 */
export function visibleCards(env: NodeJS.ProcessEnv = process.env, driverDir = '/proc/driver/nvidia/gpus'): number | undefined {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined && visible.trim() !== '') return visible.split(',').length;
  try {
    return fs.readdirSync(driverDir).length || undefined;
  } catch {
    return undefined;
  }
}

export function chooseDevice(flag: string, env: NodeJS.ProcessEnv = process.env, cards: number | undefined = visibleCards(env)): DeviceChoice {
  const m = /^([a-z]+)(?::(\d+))?$/.exec(flag);
  if (!m) throw new UserError(`--device ${flag}: expected a provider name, optionally with a card (cpu, cuda, cuda:1; see dinofeat devices)`);
  const provider = m[1]!;
  if (m[2] !== undefined) {
    if (provider === 'webgpu') {
      // onnxruntime-node's WebGPU options have no adapter index (its "deviceId" names a context, not a card).
      throw new UserError(`--device ${flag}: ONNX Runtime's WebGPU provider cannot pick a card (it takes the system's default adapter); use --device webgpu, or cuda:${m[2]}`);
    }
    if (!CARD_PROVIDERS.has(provider)) throw new UserError(`--device ${flag}: ${provider} takes no card index; use --device ${provider}`);
    return { provider, deviceId: Number(m[2]) };
  }
  const rank = CARD_PROVIDERS.has(provider) ? localRank(env) : undefined;
  if (!rank) return { provider };
  // More workers than cards (or one card bound per task): they share the cards in turn.
  const deviceId = cards ? rank.rank % cards : rank.rank;
  return { provider, deviceId, chosenBy: `${rank.name}=${rank.rank}${cards ? ` of ${cards} card${cards > 1 ? 's' : ''}` : ''}` };
}

/** The session settings' share of a choice (see SessionSettings in devices.ts). */
export function sessionDevice(d: DeviceChoice): { device: string; deviceId?: number; cardChosenBy?: string } {
  return { device: d.provider, deviceId: d.deviceId, cardChosenBy: d.chosenBy };
}
