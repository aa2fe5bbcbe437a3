/**
 * The preprocessing record has one owner, which writes it (describePreprocessing) and reads it
 * back (parsePreprocessing): what extract records gives back the settings it ran with, a garbled
 * record gives one line naming what is wrong, and the JSON is byte for byte what earlier versions
 * wrote, since existing caches and their fingerprints depend on it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveBuckets } from '../src/image/buckets.js';
import type { PrepareSettings } from '../src/image/prepare-settings.js';
import { describePreprocessing, parsePreprocessing, prepareSettingsOf } from '../src/image/preprocessing-record.js';
import type { ModelInfo } from '../src/model/info.js';

const INFO: Pick<ModelInfo, 'resample' | 'imageMean' | 'imageStd'> = {
  resample: 'bicubic', imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225],
};

const settings = (o: Partial<PrepareSettings> & { patchSize?: number } = {}): PrepareSettings => ({
  buckets: o.buckets ?? resolveBuckets({ buckets: 'sdxl', dinoScale: o.dinoScale ?? 1 }, o.patchSize ?? 16),
  resize: o.resize ?? 'stretch',
  dinoScale: o.dinoScale ?? 1,
  decode: o.decode ?? { maxPixels: 100_000_000, background: '#ffffff', icc: 'ignore' },
});

test('the record is the JSON earlier versions wrote, byte for byte', () => {
  const s = settings({
    buckets: [{ width: 512, height: 512, trainer: { width: 1024, height: 1024 } }, { width: 416, height: 608, trainer: { width: 832, height: 1216 } }],
    resize: 'cover', dinoScale: 0.5, decode: { maxPixels: 1e8, background: '#ffffff', icc: 'convert' },
  });
  assert.equal(
    JSON.stringify(describePreprocessing(INFO, s)),
    '{"resize":"cover","resample":"bicubic","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225],' +
      '"buckets":["1024x1024→512x512","832x1216→416x608"],"dinoScale":0.5,"background":"#ffffff","icc":"convert","orientation":"exif"}',
  );
});

test('describe → JSON → parse gives back the settings extract ran with', () => {
  const cases: PrepareSettings[] = [
    settings(),
    settings({ dinoScale: 0.5, resize: 'cover' }),
    settings({ dinoScale: 0.75, patchSize: 14, decode: { maxPixels: 5_000_000, background: '#000000', icc: 'convert' } }),
  ];
  for (const s of cases) {
    const parsed = parsePreprocessing(JSON.parse(JSON.stringify(describePreprocessing(INFO, s))));
    assert.ok('value' in parsed, 'problem' in parsed ? parsed.problem : '');
    assert.deepEqual(prepareSettingsOf(parsed.value, s.decode.maxPixels), s);
    assert.deepEqual(
      { resample: parsed.value.resample, mean: parsed.value.mean, std: parsed.value.std },
      { resample: INFO.resample, mean: INFO.imageMean, std: INFO.imageStd },
    );
  }
});

test('a garbled record gives one line naming each bad field', () => {
  const good = JSON.parse(JSON.stringify(describePreprocessing(INFO, settings())));
  const garbled = { ...good, mean: [0.5, 0.5], buckets: ['1024x1024→512x512', '64x64'], icc: undefined, orientation: 'none' };
  const parsed = parsePreprocessing(garbled);
  assert.ok('problem' in parsed);
  assert.equal(parsed.problem, 'preprocessing record lacks or garbles mean=[0.5,0.5], buckets=["1024x1024→512x512","64x64"], icc=missing, orientation="none"');
  assert.deepEqual(parsePreprocessing({}), {
    problem: 'preprocessing record lacks or garbles resize=missing, resample=missing, mean=missing, std=missing, buckets=missing, ' +
      'dinoScale=missing, background=missing, icc=missing, orientation=missing',
  });
});

test('with --crops the record ends with the file (format, sha256, fallback, buckets) and reads back; a garbled one is named', () => {
  const crops = { format: 'kohya' as const, sha256: 'ab'.repeat(32), fallback: true, buckets: [{ width: 416, height: 608, trainer: { width: 832, height: 1216 } }] };
  const s = { ...settings({ dinoScale: 0.5 }), crops };
  const json = JSON.stringify(describePreprocessing(INFO, s));
  assert.ok(json.endsWith(`"orientation":"exif","crops":{"format":"kohya","sha256":"${'ab'.repeat(32)}","fallback":true,"buckets":["832x1216→416x608"]}}`), json);
  const parsed = parsePreprocessing(JSON.parse(json));
  assert.ok('value' in parsed, 'problem' in parsed ? parsed.problem : '');
  assert.deepEqual(prepareSettingsOf(parsed.value, s.decode.maxPixels), s);
  const garbled = parsePreprocessing({ ...JSON.parse(json), crops: { format: 'onetrainer', sha256: 'x', fallback: true, buckets: [] } });
  assert.ok('problem' in garbled && garbled.problem.includes('crops={"format":"onetrainer"'), JSON.stringify(garbled));
});
