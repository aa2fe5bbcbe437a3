/**
 * Turns --model into an ONNX file: an .onnx path as is; a Hugging Face checkpoint directory is
 * converted once (fp32) into $DINOFEAT_HOME/converted/, keyed by its weights' hash; a Hub-layout
 * directory with onnx/model.onnx uses that file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { convertCheckpoint } from '../convert/convert.js';
import { openCheckpoint } from '../convert/safetensors.js';
import { defaultModelPath, dinofeatHome } from '../paths.js';

export async function resolveModelPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const given = flag ?? env.DINOFEAT_MODEL;
  if (!given) {
    const fallback = defaultModelPath(env);
    // Through the symlink's target: ORT finds a big model's .onnx.data beside the real file.
    if (fs.existsSync(fallback)) return fs.realpathSync(fallback);
    throw new UserError('no model given: pass --model model.onnx (or a checkpoint directory), set DINOFEAT_MODEL, or run dinofeat pull facebook/dinov3-vits16-pretrain-lvd1689m');
  }
  const st = fs.statSync(given, { throwIfNoEntry: false });
  if (!st) throw new UserError(`model ${given} not found: pass an .onnx file or a Hugging Face checkpoint directory`);
  if (st.isFile()) return given;
  const hubOnnx = path.join(given, 'onnx', 'model.onnx');
  if (!fs.existsSync(path.join(given, 'config.json')) && fs.existsSync(hubOnnx)) return hubOnnx;
  const ckpt = openCheckpoint(given);
  const sha = await ckpt.sha256().finally(() => ckpt.close());
  const out = path.join(dinofeatHome(env), 'converted', `${sha.slice(0, 16)}-fp32.onnx`);
  if (!fs.existsSync(out)) {
    process.stderr.write(`dinofeat: converting ${given} to ${out} (once)\n`);
    await convertCheckpoint(given, out, { precision: 'fp32' });
  }
  return out;
}
