/**
 * Shards written in both formats and dtypes read back equal, through the project's reader and
 * through independent readers: pyarrow (both formats) and DuckDB (Parquet).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDBBlobValue, DuckDBInstance, DuckDBListValue, type DuckDBValue } from '@duckdb/node-api';
import { createShardWriter, type ShardResult } from '../src/shard/shard-writer.js';
import { readFeatureRows, readShardInfo, readShardRows } from '../src/shard/shard-reader.js';
import { META_KEYS, shardColumns, type FeatureRow, type ShardFormat, type TensorDtype } from '../src/shard/schema.js';
import { HIDDEN, NUM_REGISTERS, assertClose, makeRow, shardMeta, type StoredScalars } from './fixtures/feature-rows.js';
import { pythonJson } from './helpers/python.js';
import { tempDir } from './helpers/temp.js';

interface Case {
  format: ShardFormat;
  dtype: TensorDtype;
  registersKept: boolean;
  file: string;
  rows: FeatureRow[];
  result?: ShardResult;
}

const dir = tempDir();
const ROWS = 5;
const cases: Case[] = [];
for (const format of ['parquet', 'arrow'] as const) {
  for (const dtype of ['float16', 'float32'] as const) {
    for (const registersKept of [false, true]) {
      const file = path.join(dir, `${format}-${dtype}-${registersKept ? 'reg' : 'noreg'}.${format}`);
      const rows = Array.from({ length: ROWS }, (_, i) => makeRow(i, registersKept));
      cases.push({ format, dtype, registersKept, file, rows });
    }
  }
}
const name = (c: Case) => `${c.format} ${c.dtype}${c.registersKept ? ' +registers' : ''}`;

before(async () => {
  for (const c of cases) {
    // Two rows per row group: the readers must stitch several groups together.
    const writer = createShardWriter(c.format, { rowGroupRows: 2 });
    await writer.open(`${c.file}.tmp`, shardMeta(c.dtype, c.registersKept));
    await writer.append(c.rows.slice(0, 3));
    await writer.append(c.rows.slice(3));
    c.result = await writer.close();
    fs.renameSync(`${c.file}.tmp`, c.file);
  }
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

function assertRowEqual(actual: FeatureRow, expected: FeatureRow, dtype: TensorDtype, registersKept: boolean): void {
  const { cls, patches, registers, ...scalars } = expected;
  const { cls: aCls, patches: aPatches, registers: aRegisters, ...aScalars } = actual;
  assert.deepEqual(aScalars, scalars);
  assertClose(aCls, cls, 'float32', `${expected.key} cls`);
  assertClose(aPatches, patches, dtype, `${expected.key} patches`);
  if (registersKept) assertClose(aRegisters!, registers!, dtype, `${expected.key} registers`);
  else assert.equal(aRegisters, undefined);
}

describe('shard writers', () => {
  it('report rows, bytes and the sha256 of the file they wrote', () => {
    for (const c of cases) {
      const bytes = fs.readFileSync(c.file);
      assert.equal(c.result!.rows, ROWS, name(c));
      assert.equal(c.result!.bytes, bytes.length, name(c));
      assert.equal(c.result!.sha256, crypto.createHash('sha256').update(bytes).digest('hex'), name(c));
    }
  });

  it('refuse a row whose tensors do not fit its grid', async () => {
    const writer = createShardWriter('parquet');
    await writer.open(path.join(dir, 'bad.parquet.tmp'), shardMeta('float16', false));
    const row = makeRow(0, false);
    await assert.rejects(writer.append([{ ...row, gridW: row.gridW + 1 }]), /patches has/);
    await writer.abort();
    assert.equal(fs.existsSync(path.join(dir, 'bad.parquet.tmp')), false);
  });
});

describe('project reader', () => {
  it('reads metadata, row counts and every column', async () => {
    for (const c of cases) {
      const info = await readShardInfo(c.file);
      assert.equal(info.format, c.format);
      assert.equal(info.rows, ROWS);
      assert.deepEqual(info.columns, shardColumns(c.registersKept));
      assert.deepEqual(info.meta, shardMeta(c.dtype, c.registersKept));
    }
  });

  it('reads every row back equal to the dtype precision', async () => {
    for (const c of cases) {
      const rows = await readFeatureRows(c.file);
      assert.equal(rows.length, ROWS, name(c));
      rows.forEach((r, i) => assertRowEqual(r, c.rows[i]!, c.dtype, c.registersKept));
    }
  });

  it('reads selected columns only, by row range and by key', async () => {
    for (const c of cases) {
      const light = await readShardRows(c.file, { columns: ['key', 'grid_h'] });
      assert.deepEqual(light, c.rows.map((r) => ({ key: r.key, grid_h: r.gridH })));
      const range = await readFeatureRows(c.file, { rowStart: 1, rowEnd: 4 });
      assert.deepEqual(range.map((r) => r.key), c.rows.slice(1, 4).map((r) => r.key));
      const byKey = await readFeatureRows(c.file, { keys: [c.rows[3]!.key] });
      assert.equal(byKey.length, 1);
      assertRowEqual(byKey[0]!, c.rows[3]!, c.dtype, c.registersKept);
    }
  });
});

const PYARROW_READ = `
import json, sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
out = {}
for f in sys.argv[1:]:
    if f.endswith('.arrow'):
        with pa.memory_map(f) as src:
            t = pa.ipc.open_stream(src).read_all()
    else:
        t = pq.read_table(f)
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    dt = {'float16': '<f2', 'float32': '<f4'}[meta['dinofeat.dtype']]
    hidden = int(meta['dinofeat.hidden_size'])
    rows = []
    for r in t.to_pylist():
        r['patches'] = np.frombuffer(r['patches'], dt).astype(np.float32).reshape(r['grid_h'], r['grid_w'], hidden).tolist()
        if 'registers' in r:
            r['registers'] = np.frombuffer(r['registers'], dt).astype(np.float32).reshape(-1, hidden).tolist()
        rows.append(r)
    out[f] = {'columns': t.column_names, 'types': {n: str(t.schema.field(n).type) for n in t.column_names}, 'meta': meta, 'rows': rows}
print(json.dumps(out))
`;

/** What PYARROW_READ prints for each file: its columns, their types, the schema metadata and the rows. */
interface PyarrowFile {
  columns: string[];
  types: Record<string, string>;
  meta: Record<string, string>;
  rows: PyarrowRow[];
}

/** One row as pyarrow reads it, patches and registers decoded to [grid_h][grid_w][hidden] and [registers][hidden]. */
interface PyarrowRow extends StoredScalars {
  cls: number[];
  patches: number[][][];
  registers?: number[][];
}

describe('pyarrow', () => {
  it('reads both formats: every column, metadata, patches reshaped to [grid_h, grid_w, hidden]', async () => {
    const read = await pythonJson<Record<string, PyarrowFile>>(['-c', PYARROW_READ, ...cases.map((c) => c.file)]);
    for (const c of cases) {
      const got = read[c.file];
      assert.ok(got, `pyarrow did not read ${c.file}`);
      assert.deepEqual(got.columns, shardColumns(c.registersKept), name(c));
      assert.equal(got.types.cls, c.format === 'parquet' ? 'list<element: float not null>' : 'list<item: float not null>');
      assert.equal(got.types.patches, 'binary');
      assert.equal(got.meta[META_KEYS.dtype], c.dtype);
      assert.match(got.meta[META_KEYS.layout], /patches: \[grid_h\*grid_w, hidden\] row-major little-endian/);
      assert.deepEqual(JSON.parse(got.meta[META_KEYS.model]), shardMeta(c.dtype, c.registersKept).model);
      got.rows.forEach((r, i) => {
        const e = c.rows[i]!;
        assert.deepEqual(
          [r.key, r.sha256, r.width, r.height, r.bucket_width, r.bucket_height, r.grid_h, r.grid_w, r.crop_x, r.crop_y, r.crop_w, r.crop_h],
          [e.key, e.sha256, e.width, e.height, e.bucketWidth, e.bucketHeight, e.gridH, e.gridW, e.cropX, e.cropY, e.cropW, e.cropH],
        );
        assertClose(r.cls, e.cls, 'float32', `${name(c)} cls`);
        const patches = r.patches;
        assert.equal(patches.length, e.gridH);
        assert.equal(patches[0]!.length, e.gridW);
        // Patch (y, x) must be the model's token y*grid_w + x: row-major over the grid.
        assertClose(patches.flat(2), e.patches, c.dtype, `${name(c)} patches`);
        if (c.registersKept) {
          assert.ok(r.registers, `${name(c)}: no registers column`);
          assert.equal(r.registers.length, NUM_REGISTERS);
          assertClose(r.registers.flat(), e.registers!, c.dtype, `${name(c)} registers`);
        }
      });
    }
  });
});

describe('DuckDB', () => {
  it('reads Parquet shards: every column, cls as FLOAT[], tensors as BLOB', async () => {
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    for (const c of cases.filter((x) => x.format === 'parquet')) {
      const reader = await db.runAndReadAll(`SELECT * FROM read_parquet('${c.file.replaceAll("'", "''")}') ORDER BY key`);
      assert.deepEqual(reader.columnNames(), shardColumns(c.registersKept));
      assert.equal(reader.columnTypes().find((_, i) => reader.columnNames()[i] === 'cls')!.toString(), 'FLOAT[]');
      const expected = [...c.rows].sort((a, b) => (a.key < b.key ? -1 : 1));
      reader.getRowObjects().forEach((r, i) => {
        const e = expected[i]!;
        assert.equal(r.key, e.key);
        assert.equal(r.grid_w, e.gridW);
        assertClose(floats(r.cls), e.cls, 'float32', 'duckdb cls');
        assert.ok(r.patches instanceof DuckDBBlobValue, 'patches is a BLOB');
        const copy = Uint8Array.from(r.patches.bytes); // a fresh buffer: DuckDB may hand out a view into a larger one
        const decoded = c.dtype === 'float32'
          ? new Float32Array(copy.buffer)
          : Float32Array.from(new Uint16Array(copy.buffer), halfToFloat);
        assert.equal(decoded.length, e.gridH * e.gridW * HIDDEN);
        assertClose(decoded, e.patches, c.dtype, 'duckdb patches');
      });
      const [sum] = (await db.runAndReadAll(`SELECT count(*) AS n, count(DISTINCT key) AS k FROM read_parquet('${c.file}')`)).getRowObjects();
      assert.equal(Number(sum!.n), ROWS);
      assert.equal(Number(sum!.k), ROWS);
    }
  });
});

/** A DuckDB FLOAT[] value as numbers; anything else fails the test. */
function floats(value: DuckDBValue): number[] {
  assert.ok(value instanceof DuckDBListValue, `not a list: ${String(value)}`);
  return value.items.map((v) => (typeof v === 'number' ? v : assert.fail(`not a float: ${String(v)}`)));
}

/** Independent fp16 decoder (IEEE 754 binary16), so the DuckDB check does not reuse the project's. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
