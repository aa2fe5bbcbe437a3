/**
 * The feature format holds: the tiny test model's stored values on fixed images (test/golden/
 * feature-pin.json) are reproduced within FEATURE_TOLERANCE. An accidental change to features (a
 * resize filter, a pixel offset, 8-bit rounding, normalisation, token split, stored rounding) fails
 * here; if the change is meant, bump FEATURE_FORMAT_VERSION in src/cache/feature-format.ts (so older
 * caches are refused with their one line instead of mixing features) and repin:
 *
 *     npm run build && DINOFEAT_REPIN=1 node --import tsx --test test/feature-format.test.ts
 *
 * Repinning refuses values beyond the tolerance while the pin is of the current format version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FEATURE_FORMAT_VERSION, FEATURE_TOLERANCE } from '../src/cache/feature-format.js';
import { PIN_FILE, PIN_FLAGS, pinOfCache, readPin, worstDeviation, writePinImages, type FeaturePin } from './fixtures/feature-pin.js';
import { makeTinyModel } from './fixtures/tiny-model.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const REGENERATE = 'npm run build && DINOFEAT_REPIN=1 node --import tsx --test test/feature-format.test.ts';

test('the test model\'s stored features on fixed images match the pin within the feature format\'s tolerance', async (t) => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  await writePinImages(images);
  const model = (await makeTinyModel(dir)).onnx;
  const cache = path.join(dir, 'cache');
  const r = await runCli(['extract', images, '--out', cache, '--model', model, ...PIN_FLAGS, '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const actual = await pinOfCache(cache);
  const pin = readPin();

  if (process.env.DINOFEAT_REPIN === '1') {
    if (pin?.featureFormat === FEATURE_FORMAT_VERSION) {
      const { deviation, where } = worstDeviation(pin.images, actual);
      assert.ok(deviation <= FEATURE_TOLERANCE, `features moved by ${deviation.toExponential(2)} of a token's norm (${where}), beyond the tolerance ${FEATURE_TOLERANCE}: bump FEATURE_FORMAT_VERSION in src/cache/feature-format.ts before repinning`);
    }
    const next: FeaturePin = { featureFormat: FEATURE_FORMAT_VERSION, regenerate: REGENERATE, images: actual };
    fs.writeFileSync(PIN_FILE, `${JSON.stringify(next, null, 2)}\n`);
    return;
  }
  assert.ok(pin, `${PIN_FILE} is missing: ${REGENERATE}`);
  assert.equal(pin.featureFormat, FEATURE_FORMAT_VERSION, `the pin is of feature format ${pin.featureFormat}: repin with ${REGENERATE}`);
  const { deviation, where } = worstDeviation(pin.images, actual);
  t.diagnostic(`worst deviation ${deviation.toExponential(2)} of a token's norm (${where})`);
  assert.ok(deviation <= FEATURE_TOLERANCE,
    `features moved by ${deviation.toExponential(2)} of a token's norm (${where}), beyond FEATURE_TOLERANCE ${FEATURE_TOLERANCE}. ` +
    'If that is meant, bump FEATURE_FORMAT_VERSION (src/cache/feature-format.ts) and repin; otherwise it is a bug');
});
