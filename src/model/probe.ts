/**
 * Checks a loaded model against the contract before any image is read: input pixel_values,
 * output last_hidden_state with 1 + registers + grid tokens at two grid sizes (so a model that
 * ignores the input size, or has another layout, fails here with one line), and learns the
 * hidden size of a foreign export.
 */
import { UserError } from '../core/errors.js';
import type { ModelInfo } from './info.js';
import type { OrtWorker } from './ort-worker.js';
import { tokenCount } from './info.js';

export async function probeModel(model: OrtWorker, info: ModelInfo, label: string): Promise<ModelInfo> {
  if (!model.inputNames.includes('pixel_values') || !model.outputNames.includes('last_hidden_state')) {
    throw new UserError(`${label} does not follow the contract: inputs [${model.inputNames}], outputs [${model.outputNames}]; expected input pixel_values and output last_hidden_state (dinofeat convert makes such a model)`);
  }
  let hidden = info.hiddenSize;
  for (const [gh, gw] of [[2, 3], [3, 1]] as const) {
    const h = gh * info.patchSize;
    const w = gw * info.patchSize;
    let dims: readonly number[];
    try {
      const out = await model.run({ pixel_values: { type: 'float32', data: new Float32Array(3 * h * w), dims: [1, 3, h, w] } }, ['last_hidden_state']);
      dims = out.last_hidden_state!.dims;
    } catch (e) {
      throw new UserError(`${label} failed on a ${w}x${h} test input (${(e as Error).message.split('\n')[0]}); is the patch size ${info.patchSize} right?`);
    }
    const expected = tokenCount(info, gh, gw);
    if (dims.length !== 3 || dims[1] !== expected || (hidden && dims[2] !== hidden)) {
      throw new UserError(`${label} gives last_hidden_state [${dims}] for a ${w}x${h} input; expected [1, ${expected}, ${hidden || 'hidden'}] (1 CLS + ${info.numRegisters} registers + ${gh}x${gw} patches of ${info.patchSize}px); check --patch-size/--num-registers or reconvert the model`);
    }
    hidden = dims[2]!;
  }
  return { ...info, hiddenSize: hidden };
}
