/** Where dinofeat keeps models: $DINOFEAT_HOME, default ~/.cache/dinofeat. */
import os from 'node:os';
import path from 'node:path';

export function dinofeatHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.DINOFEAT_HOME || path.join(os.homedir(), '.cache', 'dinofeat'));
}

/** Pulled checkpoints and their conversions, one directory per repo. */
export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'models');
}

/** Every pulled revision of one Hub repo: models/<owner>--<name>/. */
export function pulledRepoDir(repoId: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(modelsDir(env), repoId.replace('/', '--'));
}

/** A pulled checkpoint and its converted models: models/<owner>--<name>/<revision>/. */
export function pulledModelDir(repoId: string, revision: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(pulledRepoDir(repoId, env), revision);
}

/** The model extract uses when neither --model nor $DINOFEAT_MODEL is given. */
export function defaultModelPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(dinofeatHome(env), 'default.onnx');
}
