/** Where dinofeat keeps models: $DINOFEAT_HOME, default ~/.cache/dinofeat. */
import os from 'node:os';
import path from 'node:path';

export function dinofeatHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.DINOFEAT_HOME || path.join(os.homedir(), '.cache', 'dinofeat'));
}

/** A pulled checkpoint and its converted models: models/<owner>--<name>/<revision>/. */
export function pulledModelDir(repoId: string, revision: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'models', repoId.replace('/', '--'), revision);
}

/** The model extract uses when neither --model nor $DINOFEAT_MODEL is given. */
export function defaultModelPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'default.onnx');
}
