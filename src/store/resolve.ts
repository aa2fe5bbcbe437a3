/**
 * Turns --model into an ONNX file: an .onnx path as is; a Hugging Face checkpoint directory is
 * converted once (fp32) into the store's converted/<key>/ (./layout.ts); a Hub-layout directory
 * with onnx/model.onnx uses that file. Without --model: $DINOFEAT_MODEL, then the default model.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { checkpointKey, convertOnce } from './convert-once.js';
import { convertedModelDir, defaultModelPath } from './layout.js';

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
  const modelDir = convertedModelDir(await checkpointKey(given), env);
  const { modelPath } = await convertOnce(given, modelDir, {
    precision: 'fp32',
    onStart: (to) => process.stderr.write(`dinofeat: converting ${given} to ${to} (once)\n`),
  });
  return modelPath;
}
