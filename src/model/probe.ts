/**
 * Checks a loaded model against the contract (./contract.ts) before any image is read, so a model
 * that ignores the input size, or has another layout, fails here with one line; learns the hidden
 * size of a foreign export.
 */
import { UserError } from '../core/errors.js';
import { CONTRACT_FIXES, testContract, type ContractKind, type ContractModel } from './contract.js';
import type { ModelInfo } from './info.js';

/**
 * Findings that make extraction impossible or wrong. The others (NaN on random inputs, a pooler
 * that differs from token 0) are validate's to report: extract reads only last_hidden_state.
 */
const BLOCKS_EXTRACTION: ReadonlySet<ContractKind> = new Set(['contract', 'run', 'token-count', 'hidden-size']);

export async function probeModel(model: ContractModel, info: ModelInfo, label: string): Promise<ModelInfo> {
  const { findings, hiddenSize } = await testContract(model, info);
  const broken = findings.find((f) => BLOCKS_EXTRACTION.has(f.kind));
  if (broken) {
    const at = broken.where === 'model' ? '' : `on a ${broken.where}, `;
    throw new UserError(`${label} does not follow the contract: ${at}${broken.detail}; ${CONTRACT_FIXES[broken.kind]}`);
  }
  return { ...info, hiddenSize };
}
