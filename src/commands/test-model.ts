/**
 * `dinofeat test-model <dir>`: writes the small deterministic DINOv3-shaped checkpoint (random
 * weights, NOT a real model) and its ONNX conversion, for the demo, tests and benchmarks.
 */
import { EXIT } from '../core/errors.js';
import { makeTestModel, type TestModelSize } from '../convert/test-model.js';

export async function runTestModel(dir: string, o: { size: TestModelSize }): Promise<number> {
  const { checkpointDir, converted: r } = await makeTestModel(dir, o.size);
  process.stdout.write(`dinofeat test-model: ${checkpointDir} and ${r.modelPath} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, hidden ${r.info.hiddenSize}); random weights, NOT a real model\n`);
  return EXIT.ok;
}
