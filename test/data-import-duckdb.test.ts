/**
 * The import through DuckDB: both engines (DuckDB, the JavaScript fallback)
 * give the same data set (the same id) for the same file; Parquet in gives
 * the data set its CSV gives; the memory limit, threads and temp dir are
 * applied (read back from DuckDB), and a file larger than the limit spills to
 * the work dir and still imports, leaving nothing behind. Real files, real
 * DuckDB.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createWriteStream, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { allShards, importDataset, readDescription, readShard, shardPath } from '../node/data/imported/index.ts'
import type { ImportOptions } from '../node/data/imported/index.ts'
import { seededRandom } from '../node/data/random.ts'

const CSV = [
  'id,age,city,comment,score,label',
  '1,34,Paris,"Great product, would buy again",4.5,pos',
  '2,,Berlin,"Terrible.',
  'Broke after a day",1.0,neg',
  '3,29,Zürich,"Ça marche très bien — naïve café ☕",4.0,pos',
  '3,29,Zürich,"Ça marche très bien — naïve café ☕",4.0,pos',
  '4,51,Paris,"said ""meh"", then left",2.5,neg',
  '5,40,Oslo,,3.0,pos',
  '6,NA,Oslo,fine,3.5,pos',
  '7,22,Paris,"ok, fine",,neg',
  '8,38,Berlin,"bad, bad",1.5,neg',
  '9,45,Oslo,"good value",4.0,pos',
  ''
].join('\n')

function tempDir (): string {
  return mkdtempSync(join(tmpdir(), 'peer-data-import-duckdb-'))
}

function rowsOf (dir: string): Array<Record<string, unknown>> {
  const d = readDescription(dir)
  return allShards(d).flatMap(s => [...readShard(shardPath(dir, s))].map(row => row.toJSON() as Record<string, unknown>))
}

async function sql (statements: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:')
  const db = await instance.connect()
  try {
    await db.run(statements)
  } finally {
    db.closeSync()
    instance.closeSync()
  }
}

/** Writes `header`, then `line(i)` for i = 0 … rows − 1 (each with its newline), streamed to `path`. */
async function writeLines (path: string, header: string, rows: number, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(path)
  out.write(header)
  for (let i = 0; i < rows; i++) if (!out.write(line(i))) await once(out, 'drain')
  out.end()
  await once(out, 'finish')
}

/** A CSV of `rows` distinct rows with long decimals (their sums depend on the order of addition) and text. */
async function writeNumbers (path: string, rows: number, textWords: number): Promise<void> {
  const rand = seededRandom(7)
  await writeLines(path, 'x,y,kind,body,label\n', rows, i => {
    const words = Array.from({ length: textWords }, () => Math.floor(rand() * 1e9).toString(36)).join(' ')
    return `${(rand() * 1e6 - 5e5).toPrecision(17)},${i % 97 === 0 ? '' : (rand() * 1e-3).toExponential(12)},k${i % 7},"${words}",${rand() < 0.4 ? 'a' : 'b'}\n`
  })
}

test('both engines give the same data set (CSV drop and fill, TSV, JSON lines)', async () => {
  const dir = tempDir()
  try {
    const csv = join(dir, 'reviews.csv')
    writeFileSync(csv, CSV)
    const tsv = join(dir, 'rows.tsv')
    writeFileSync(tsv, 'a\tnote\tlabel\n1\thello, world\tx\n2\tbye\ty\n2\tbye\ty\n3\t  NaN \tx\n')
    const jsonl = join(dir, 'rows.jsonl')
    writeFileSync(jsonl, [
      '{"x": 1.5, "kind": "a", "ok": true, "y": "cat"}',
      '{"x": null, "kind": "b", "ok": false, "y": "dog"}',
      '',
      '{"kind": "a", "ok": true, "y": "dog"}',
      '{"x": 2.5, "kind": "b", "ok": false, "y": "cat"}',
      '{"x": 1.5, "kind": "a", "ok": true, "y": "cat"}',
      '{"x": 3, "kind": "N/A", "ok": true, "y": "dog"}',
      '{"x": 4, "kind": "c", "ok": true, "y": "dog"}'
    ].join('\n'))
    const cases: Array<[string, Omit<ImportOptions, 'outDir'>]> = [
      [csv, { label: 'label', text: ['comment'], ignore: ['id'], shards: 2, testFraction: 0.3 }],
      [csv, { label: 'label', text: ['comment'], missing: 'fill', shards: 3, testFraction: 0.3, normalize: 'minmax' }],
      [tsv, { label: 'label', shards: 1, testFraction: 0, missing: 'fill' }],
      [jsonl, { label: 'y', shards: 1, testFraction: 0 }]
    ]
    for (const [file, options] of cases) {
      const duck = await importDataset(file, { ...options, outDir: join(dir, 'duck') })
      const js = await importDataset(file, { ...options, outDir: join(dir, 'js'), engine: 'js' })
      assert.equal(duck.engine.name, 'duckdb')
      assert.equal(js.engine.name, 'js')
      const { engine: _a, dir: _b, ...duckRest } = duck
      const { engine: _c, dir: _d, ...jsRest } = js
      assert.deepEqual(duckRest, jsRest, `${file} ${JSON.stringify(options)}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('missing values spelled every way, and values that only start like one, in every column over many result chunks: both engines drop and fill the same rows, the same data set', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'spellings.csv')
    const rand = seededRandom(5)
    // missing (blank, or na, n/a, nan, null in any case, with any blanks around) and not (values that start with a
    // blank, n or N, or a byte that is not ASCII, and are not missing)
    const missing = ['', ' ', 'NA', 'na', 'n/a', 'N/A', 'NaN', 'nan', 'NULL', 'null', ' Null ', '\t na', '\u3000NA\u3000', '\u00a0n/a', '\ufeffnull']
    const present = ['N', 'n', 'no', 'Nancy', 'nat', 'nulls', ' x', '\u3000y', 'é', 'Zürich', '!', '0', '12.5', 'Oslo', 'n/b']
    const pick = (): string => rand() < 0.1 ? missing[Math.floor(rand() * missing.length)] : present[Math.floor(rand() * present.length)]
    const q = (v: string): string => `"${v}"`
    const lines = ['a,b,body,label']
    for (let i = 0; i < 6000; i++) lines.push([pick(), pick(), q(`${pick()} ${i % 1000}`), rand() < 0.5 ? 'p' : 'q'].join(','))
    for (let i = 0; i < 300; i++) lines.push(q(pick()) + ',' + q(pick()) + ',' + q(rand() < 0.5 ? pick() : `${pick()} text`) + ',p')
    writeFileSync(file, lines.join('\n') + '\n')
    for (const missing of ['drop', 'fill'] as const) {
      const options = { label: 'label', text: ['body'], missing, shards: 2, buckets: 256 }
      const duck = await importDataset(file, { ...options, outDir: join(dir, `duck-${missing}`), threads: 2 })
      const js = await importDataset(file, { ...options, outDir: join(dir, `js-${missing}`), engine: 'js' })
      assert.equal(duck.engine.name, 'duckdb')
      assert.ok(duck.droppedMissing > 0 || missing === 'fill')
      assert.ok(duck.droppedDuplicates > 0)
      const { engine: _a, dir: _b, ...duckRest } = duck
      const { engine: _c, dir: _d, ...jsRest } = js
      assert.deepEqual(duckRest, jsRest, missing)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('training means are summed in file order: the same id from both engines on 20,000 rows of long decimals', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'numbers.csv')
    await writeNumbers(file, 20_000, 3)
    const options = { label: 'label', text: ['body'], shards: 4, buckets: 256 }
    const duck = await importDataset(file, { ...options, outDir: join(dir, 'duck'), threads: 2 })
    const js = await importDataset(file, { ...options, outDir: join(dir, 'js'), engine: 'js' })
    assert.equal(duck.rowsRead, 20_000)
    assert.equal(duck.droppedMissing, Math.ceil(20_000 / 97))
    assert.equal(duck.datasetId, js.datasetId)
    const d = readDescription(duck.dir)
    assert.equal(d.columns.find(c => c.name === 'x')?.shift, readDescription(js.dir).columns.find(c => c.name === 'x')?.shift)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('text of every length (inline in DuckDB\'s strings up to 12 bytes, copied by the client beyond) comes out as written, over many result chunks', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'lengths.csv')
    const rand = seededRandom(7)
    const bodies = Array.from({ length: 9000 }, (_, i) => 'abcdefghijklmnopqrstuvwxyzäöü €'.repeat(2).slice(0, i % 41) + String(i))
    writeFileSync(file, `body,label\n${bodies.map(b => `"${b}",${rand() < 0.5 ? 'a' : 'b'}`).join('\n')}\n`)
    const options = { label: 'label', text: ['body'], shards: 3, testFraction: 0.2 }
    const duck = await importDataset(file, { ...options, outDir: join(dir, 'duck'), threads: 2 })
    const js = await importDataset(file, { ...options, outDir: join(dir, 'js'), engine: 'js' })
    assert.equal(duck.rowsWritten, bodies.length)
    assert.equal(duck.datasetId, js.datasetId)
    assert.deepEqual(rowsOf(duck.dir).map(r => r.body).sort(), [...bodies].sort())
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('Parquet in: the same data set as the CSV it was written from; typed columns read by the same rules', async () => {
  const dir = tempDir()
  try {
    const csv = join(dir, 'reviews.csv')
    writeFileSync(csv, CSV)
    const parquet = join(dir, 'reviews.parquet')
    // DuckDB's own reading of the CSV: age becomes VARCHAR (it holds 'NA'), score DOUBLE, id BIGINT; '' becomes NULL
    await sql(`COPY (SELECT * FROM read_csv('${csv}')) TO '${parquet}' (FORMAT parquet)`)
    const options = { label: 'label', text: ['comment'], ignore: ['id'], shards: 2, testFraction: 0 }
    const fromCsv = await importDataset(csv, { ...options, outDir: join(dir, 'a') })
    const fromParquet = await importDataset(parquet, { ...options, outDir: join(dir, 'b') })
    assert.equal(fromParquet.rowsRead, 10)
    assert.equal(fromParquet.droppedMissing, 4)
    assert.equal(fromParquet.droppedDuplicates, 1)
    assert.equal(fromParquet.rowsWritten, 5)
    assert.deepEqual(fromParquet.columns, fromCsv.columns)
    assert.equal(fromParquet.datasetId, fromCsv.datasetId)
    assert.deepEqual(rowsOf(fromParquet.dir).map(x => [x.age, x.score, x.city, x.label]), [[34, 4.5, 'Paris', 'pos'], [51, 2.5, 'Paris', 'neg'], [45, 4, 'Oslo', 'pos'], [29, 4, 'Zürich', 'pos'], [38, 1.5, 'Berlin', 'neg']])

    // booleans, integers, doubles and NaN (missing) straight from Parquet's types; with fill: the mean, the most frequent category
    const typed = join(dir, 'typed.parquet')
    await sql(`COPY (SELECT * FROM (VALUES (1::INTEGER, 0.5::DOUBLE, true, 'x'), (2, 'NaN'::DOUBLE, false, 'y'), (3, 1.5, NULL, 'x'), (4, 2.5, false, 'y'))
      t(n, v, flag, label)) TO '${typed}' (FORMAT parquet)`)
    const t = await importDataset(typed, { label: 'label', shards: 1, testFraction: 0, missing: 'fill', outDir: join(dir, 'c') })
    assert.deepEqual(t.columns.map(c => [c.name, c.type, c.missing]), [['n', 'numeric', 0], ['v', 'numeric', 1], ['flag', 'categorical', 1], ['label', 'label', 0]])
    assert.deepEqual(rowsOf(t.dir).map(x => [x.n, x.v, x.flag, x.label]), [[1, 0.5, 'true', 'x'], [2, 1.5, 'false', 'y'], [3, 1.5, 'false', 'x'], [4, 2.5, 'false', 'y']])

    // a missing label column, and a file that is not Parquet
    await assert.rejects(importDataset(typed, { label: 'nope', outDir: join(dir, 'd') }), (err: Error) => err.name === 'MissingColumnError')
    const broken = join(dir, 'broken.parquet')
    writeFileSync(broken, 'PAR1 this is not parquet')
    await assert.rejects(importDataset(broken, { label: 'label', outDir: join(dir, 'e') }), (err: Error & { file?: string }) => err.name === 'MalformedInputError' && err.file === broken)
    assert.equal(existsSync(join(dir, 'd')), false)
    assert.equal(existsSync(join(dir, 'e')), false)
    // the JavaScript engine does not read Parquet
    await assert.rejects(importDataset(typed, { label: 'label', outDir: join(dir, 'f'), engine: 'js' }), (err: Error) => err.name === 'DataInputError')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('memory limit, threads and temp dir are applied; a file larger than the limit spills and imports the same', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'big.csv')
    await writeNumbers(file, 300_000, 24) // about 63 MB, every row distinct
    const options = { label: 'label', text: ['body'], shards: 2, buckets: 256 }
    const out = join(dir, 'small')
    // (at 24 MB a text column is held as its hash, its bytes read from the file again: the limit is below the other
    // columns; at 1 GB src holds the text itself: both paths give the same data set)
    const small = await importDataset(file, { ...options, outDir: out, memoryLimit: '24MB', threads: 1 })
    assert.equal(small.rowsRead, 300_000)
    assert.equal(small.engine.name, 'duckdb')
    assert.equal(small.engine.threads, 1)
    assert.match(small.engine.memoryLimit ?? '', /^22(\.\d+)? MiB$/) // DuckDB reports 24 MB as 22.8 MiB
    assert.ok((small.engine.tempDirectory ?? '').startsWith(join(out, '.tmp-')), small.engine.tempDirectory)
    assert.ok((small.engine.spilledBytes ?? 0) > 0, `spilled ${small.engine.spilledBytes}`)
    assert.deepEqual(readdirSync(out), [small.datasetId]) // the work dir and its spill are gone
    const roomy = await importDataset(file, { ...options, outDir: join(dir, 'roomy'), memoryLimit: '1GB', threads: 2 })
    assert.equal(roomy.engine.spilledBytes, 0)
    assert.equal(roomy.engine.threads, 2)
    assert.equal(roomy.datasetId, small.datasetId)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the write pass from the kept rows held in memory and from src: one data set (the spill test reads the text from the file again)', async () => {
  const dir = tempDir()
  try {
    // about 10 MB of one-digit numbers and a short text: held, its rows take over 3 times the file (8 bytes a
    // number), so at a 40 MB limit src holds the text (the file times IN_MEMORY_TEXT fits) but the held rows would
    // not fit in HELD_SHARE of it and the shards are written from src; at 1 GB the rows are held
    const file = join(dir, 'digits.csv')
    const rand = seededRandom(5)
    let previous = ''
    await writeLines(file, `${Array.from({ length: 12 }, (_, j) => `x${j}`).join(',')},note,label\n`, 330_000, i => {
      if (i % 50 !== 49) previous = `${Array.from({ length: 12 }, () => rand() < 0.005 ? '' : String(Math.floor(rand() * 10))).join(',')},${rand() < 0.01 ? '' : Math.floor(rand() * 100).toString(36)},${rand() < 0.5 ? 'a' : 'b'}\n`
      return previous
    })
    for (const missing of ['drop', 'fill'] as const) {
      const options = { label: 'label', text: ['note'], missing, shards: 3, buckets: 256, threads: 1 }
      const ids = []
      for (const memoryLimit of ['1GB', '40MB']) ids.push((await importDataset(file, { ...options, outDir: join(dir, `${missing}-${memoryLimit}`), memoryLimit })).datasetId)
      assert.equal(ids[1], ids[0], missing)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('both engines: categories at and over the limit, two text columns, fill and drop give the same data set; a label over 256 classes is refused at the same row', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'limits.csv')
    const rand = seededRandom(11)
    const lines = ['at,over,t1,x,t2,label']
    for (let i = 0; i < 5000; i++) {
      const missing = (p: number): boolean => rand() < p
      lines.push(`${missing(0.02) ? '' : `a${i % 5}`},${`b${i % 6}`},"${missing(0.02) ? '' : `one ${i} ${Math.floor(rand() * 50)}`}",${missing(0.02) ? '' : (rand() * 100).toFixed(3)},"two ${i % 13}, é ${i % 7}",${['p', 'q', 'r'][i % 3]}`)
    }
    writeFileSync(file, `${lines.join('\n')}\n`)
    for (const missing of ['drop', 'fill'] as const) {
      const options: Partial<ImportOptions> & { label: string } = { label: 'label', text: ['t1', 't2'], missing, maxCategories: 5, shards: 3 }
      const duck = await importDataset(file, { ...options, outDir: join(dir, `duck-${missing}`), threads: 2 })
      const js = await importDataset(file, { ...options, outDir: join(dir, `js-${missing}`), engine: 'js' })
      assert.equal(duck.datasetId, js.datasetId, missing)
      const columns = readDescription(duck.dir).columns
      assert.equal(columns.find(c => c.name === 'at')?.type, 'categorical')
      assert.equal(columns.find(c => c.name === 'over')?.type, 'ignored')
    }
    const many = join(dir, 'classes.csv')
    writeFileSync(many, `x,label\n${Array.from({ length: 600 }, (_, i) => `${i},c${i % 300}`).join('\n')}\n`)
    const refusal = async (engine: 'duckdb' | 'js'): Promise<Error> => await importDataset(many, { label: 'label', outDir: join(dir, `many-${engine}`), engine }).then(() => { throw new Error('imported') }, (err: Error) => err)
    const [duckErr, jsErr] = [await refusal('duckdb'), await refusal('js')]
    assert.equal(duckErr.name, jsErr.name)
    assert.equal(duckErr.message, jsErr.message)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('long text: batches cut by their text bytes (BATCH_TEXT_BYTES) where both engines cut them, the same data set', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'long.csv')
    // about 14 kB a row: a shard's batch reaches BATCH_TEXT_BYTES after some 300 rows, long before BATCH_ROWS
    const rows = Array.from({ length: 600 }, (_, i) => `${i},"${`w${i} `.repeat(2000 + (i % 7) * 300)}",${i % 2 === 0 ? 'a' : 'b'}`)
    writeFileSync(file, `x,body,label\n${rows.join('\n')}\n`)
    const options = { label: 'label', text: ['body'], shards: 1 }
    const duck = await importDataset(file, { ...options, outDir: join(dir, 'duck'), threads: 2 })
    const js = await importDataset(file, { ...options, outDir: join(dir, 'js'), engine: 'js' })
    assert.equal(duck.datasetId, js.datasetId)
    assert.ok(readShard(shardPath(duck.dir, readDescription(duck.dir).shards[0])).batches.length > 1)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
