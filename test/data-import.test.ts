/**
 * `peer dataset import`: a crafted CSV (missing values, duplicates, quoted
 * commas and line breaks, doubled quotes, non-ASCII text) gives exactly the
 * expected counts and values; JSON lines too; bad input names the file, line
 * and column, exits 2 and writes nothing; the result loads as a Dataset.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import {
  DESCRIPTION_FILE, allShards, datasetsRoot, importDataset, listDatasets, loadImportedDataset, loadImportedShard, readDescription, readShard, shardPath
} from '../node/data/imported/index.ts'
import { importedShardSpecs } from '../node/data/shards.ts'
import type { ImportOptions } from '../node/data/imported/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { main } from '../node/cli/main.ts'

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
  return mkdtempSync(join(tmpdir(), 'peer-data-import-'))
}

/** Every row of every shard of a data set (training shards in order, then the test shard), as plain objects. */
function rowsOf (dir: string): Array<Record<string, unknown>> {
  const d = readDescription(dir)
  const out: Array<Record<string, unknown>> = []
  for (const s of allShards(d)) {
    for (const row of readShard(shardPath(dir, s))) out.push(row.toJSON() as Record<string, unknown>)
  }
  return out
}

async function capture (argv: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (b: Buffer) => { out += b.toString() })
  stderr.on('data', (b: Buffer) => { err += b.toString() })
  const code = await main(argv, { stdout, stderr, env: { ...process.env, PEER_HOME: '/nonexistent-peer-home' } })
  return { code, stdout: out, stderr: err }
}

test('crafted CSV, --missing drop: counts, types and values exactly as expected', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'reviews.csv')
    writeFileSync(file, CSV)
    const out = join(dir, 'datasets')
    const r = await importDataset(file, { label: 'label', text: ['comment'], ignore: ['id'], shards: 2, testFraction: 0, outDir: out, buckets: 256 })
    assert.equal(r.rowsRead, 10)
    assert.equal(r.droppedMissing, 4) // ids 2 (age ''), 5 (comment ''), 6 (age NA), 7 (score '')
    assert.equal(r.droppedDuplicates, 1) // the second id 3
    assert.equal(r.rowsWritten, 5)
    assert.equal(r.trainRows, 5)
    assert.equal(r.testRows, 0)
    assert.equal(r.shards, 2)
    assert.deepEqual(r.columns.map(c => [c.name, c.type, c.missing]), [
      ['id', 'ignored', 0], ['age', 'numeric', 2], ['city', 'categorical', 0], ['comment', 'text', 1], ['score', 'numeric', 1], ['label', 'label', 0]
    ])
    assert.deepEqual(r.classes, ['neg', 'pos'])
    // age, score: 1 each; city: Berlin, Oslo, Paris, Zürich among the kept rows → 4; comment: 256
    assert.equal(r.features, 1 + 4 + 256 + 1)
    assert.match(r.datasetId, /^ds-[0-9a-f]{16}$/)

    const d = readDescription(r.dir)
    assert.deepEqual(d.columns.find(c => c.name === 'city')?.categories, ['Berlin', 'Oslo', 'Paris', 'Zürich'])
    // kept rows in file order (ids 1, 3, 4, 8, 9), round robin: shard 0 = ids 1, 4, 9; shard 1 = ids 3, 8
    const rows = rowsOf(r.dir)
    assert.deepEqual(rows.map(x => x.age), [34, 51, 45, 29, 38])
    assert.deepEqual(rows.map(x => x.score), [4.5, 2.5, 4.0, 4.0, 1.5])
    assert.deepEqual(rows.map(x => x.city), ['Paris', 'Paris', 'Oslo', 'Zürich', 'Berlin'])
    assert.deepEqual(rows.map(x => x.label), ['pos', 'neg', 'pos', 'pos', 'neg'])
    assert.deepEqual(rows.map(x => x.comment), [
      'Great product, would buy again', 'said "meh", then left', 'good value', 'Ça marche très bien — naïve café ☕', 'bad, bad'
    ])
    assert.equal('id' in rows[0], false)
    // statistics over the training rows
    const age = d.stats.numeric.age
    assert.equal(age.n, 5)
    assert.equal(age.min, 29)
    assert.equal(age.max, 51)
    assert.ok(Math.abs((age.mean as number) - (34 + 51 + 45 + 29 + 38) / 5) < 1e-12)
    assert.deepEqual(d.stats.categorical.label, [2, 3])
    assert.equal(d.stats.text.comment.docs, 5)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('crafted CSV, --missing fill: means and most frequent categories fill the gaps; multi-line text kept', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'reviews.csv')
    writeFileSync(file, CSV)
    const r = await importDataset(file, { label: 'label', text: ['comment'], ignore: ['id'], missing: 'fill', shards: 1, testFraction: 0, outDir: join(dir, 'out'), buckets: 256 })
    assert.equal(r.rowsRead, 10)
    assert.equal(r.droppedMissing, 0)
    assert.equal(r.droppedDuplicates, 1)
    assert.equal(r.rowsWritten, 9)
    const d = readDescription(r.dir)
    const byName = new Map(d.columns.map(c => [c.name, c]))
    assert.equal(byName.get('age')?.fill, (34 + 29 + 51 + 40 + 22 + 38 + 45) / 7) // 37
    assert.equal(byName.get('score')?.fill, (4.5 + 1 + 4 + 2.5 + 3 + 3.5 + 1.5 + 4) / 8) // 3
    assert.equal(byName.get('city')?.fill, 'Oslo') // Oslo and Paris 3 times each; the first in sorted order wins
    const rows = rowsOf(r.dir)
    assert.deepEqual(rows.map(x => x.age), [34, 37, 29, 51, 40, 37, 22, 38, 45])
    assert.deepEqual(rows.map(x => x.score), [4.5, 1, 4, 2.5, 3, 3.5, 3, 1.5, 4])
    assert.equal(rows[1].comment, 'Terrible.\nBroke after a day')
    assert.equal(rows[4].comment, '')
    assert.equal(d.stats.numeric.age.mean, 37)
    assert.equal(d.stats.numeric.age.min, 22)
    assert.equal(d.stats.numeric.age.max, 51)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the same file and options give the same id; the data set loads with loadDataset(id, { dataDir })', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'reviews.csv')
    writeFileSync(file, CSV)
    const options: ImportOptions = { label: 'label', text: ['comment'], ignore: ['id'], missing: 'fill', shards: 3, testFraction: 0.3, outDir: datasetsRoot(dir) }
    const a = await importDataset(file, options)
    const b = await importDataset(file, options)
    assert.equal(a.datasetId, b.datasetId)
    assert.equal(a.existing, false)
    assert.equal(b.existing, true)
    assert.deepEqual(readdirSync(datasetsRoot(dir)), [a.datasetId]) // no temp dirs left behind
    const ds = loadDataset(a.datasetId, { dataDir: dir })
    assert.equal(ds.name, a.datasetId)
    assert.equal(ds.classes, 2)
    assert.equal(ds.features, a.features)
    assert.deepEqual(ds.inputShape, [a.features])
    assert.equal(ds.train.n, a.trainRows)
    assert.equal(ds.test.n, a.testRows)
    assert.equal(ds.train.n + ds.test.n, 9)
    // whole in memory (the trainer streams the training rows from the shard files instead)
    const dense = loadImportedDataset(a.dir)
    assert.equal(dense.train.n, ds.train.n)
    assert.deepEqual(dense.test, ds.test)
    assert.equal(dense.train.x.length, ds.train.n * ds.features)
    // z-scored age over the training rows has mean 0
    let sum = 0
    for (let i = 0; i < ds.train.n; i++) sum += dense.train.x[i * ds.features]
    assert.ok(Math.abs(sum / ds.train.n) < 1e-5)
    // the manifest's shards are the shard files, over contiguous ranges of the training rows
    const specs = importedShardSpecs(readDescription(a.dir))
    assert.equal(specs.length, 3)
    assert.equal(specs.reduce((n, s) => n + s.rows, 0), ds.train.n)
    const middle = loadImportedShard(a.dir, readDescription(a.dir), 1)
    assert.deepEqual(middle.x, dense.train.x.subarray(specs[1].start * ds.features, specs[1].end * ds.features))
    const listed = listDatasets(datasetsRoot(dir))
    assert.equal(listed.length, 1)
    assert.equal(listed[0].shardsPresent, listed[0].shards + 1)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('tab-separated values', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'rows.tsv')
    writeFileSync(file, 'a\tnote\tlabel\n1\thello, world\tx\n2\tbye\ty\n')
    const r = await importDataset(file, { label: 'label', shards: 1, testFraction: 0, outDir: join(dir, 'out') })
    assert.deepEqual(rowsOf(r.dir).map(x => [x.a, x.note, x.label]), [[1, 'hello, world', 'x'], [2, 'bye', 'y']])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('JSON lines: nulls and absent keys are missing; booleans and numbers are values', async () => {
  const dir = tempDir()
  try {
    const file = join(dir, 'rows.jsonl')
    writeFileSync(file, [
      '{"x": 1.5, "kind": "a", "ok": true, "y": "cat"}',
      '{"x": null, "kind": "b", "ok": false, "y": "dog"}',
      '',
      '{"kind": "a", "ok": true, "y": "dog"}',
      '{"x": 2.5, "kind": "b", "ok": false, "y": "cat"}',
      '{"x": 1.5, "kind": "a", "ok": true, "y": "cat"}',
      '{"x": 3, "kind": "c", "ok": true, "y": "dog"}'
    ].join('\n'))
    const r = await importDataset(file, { label: 'y', shards: 1, testFraction: 0, outDir: join(dir, 'out') })
    assert.equal(r.rowsRead, 6)
    assert.equal(r.droppedMissing, 2)
    assert.equal(r.droppedDuplicates, 1)
    assert.equal(r.rowsWritten, 3)
    assert.deepEqual(r.columns.map(c => [c.name, c.type]), [['x', 'numeric'], ['kind', 'categorical'], ['ok', 'categorical'], ['y', 'label']])
    assert.deepEqual(rowsOf(r.dir).map(x => [x.x, x.kind, x.ok, x.y]), [[1.5, 'a', 'true', 'cat'], [2.5, 'b', 'false', 'cat'], [3, 'c', 'true', 'dog']])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

interface BadCase {
  what: string
  name: string
  content: string | Buffer
  error: string
  line: number
  column: number | string
  options?: Partial<ImportOptions>
  file?: string
}

const BAD: BadCase[] = [
  { what: 'missing label column', name: 'nolabel.csv', content: 'a,b\n1,2\n', error: 'MissingColumnError', line: 1, column: 'label' },
  { what: 'missing --text column', name: 'notext.csv', content: 'a,label\n1,x\n2,y\n', error: 'MissingColumnError', line: 1, column: 'body', options: { text: ['body'] } },
  { what: 'empty file', name: 'empty.csv', content: '', error: 'EmptyInputError', line: 1, column: 1 },
  { what: 'header only', name: 'header.csv', content: 'a,label\n', error: 'EmptyInputError', line: 2, column: 1 },
  { what: 'ragged row (too few fields)', name: 'short.csv', content: 'a,b,label\n1,2,x\n3,y\n4,5,z\n', error: 'RaggedRowError', line: 3, column: 3 },
  { what: 'ragged row (too many fields)', name: 'long.csv', content: 'a,b,label\n1,2,x\n3,4,y,9\n', error: 'RaggedRowError', line: 3, column: 4 },
  { what: 'ragged row after a quoted line break', name: 'quoted.csv', content: 'a,b,label\n1,"two\nlines",x\n3,y\n', error: 'RaggedRowError', line: 4, column: 3 },
  { what: 'invalid UTF-8', name: 'latin1.csv', content: Buffer.concat([Buffer.from('a,b,label\n1,2,x\n3,caf'), Buffer.from([0xe9]), Buffer.from(',y\n')]), error: 'EncodingError', line: 3, column: 6 },
  { what: 'unclosed quote', name: 'unclosed.csv', content: 'a,b,label\n1,2,x\n3,"open,y\n', error: 'MalformedInputError', line: 3, column: 2 },
  { what: 'JSON line with an unknown key', name: 'rows.jsonl', content: '{"a":1,"label":"x"}\n{"a":2,"label":"y","zzz":3}\n', error: 'RaggedRowError', line: 2, column: 'zzz' },
  { what: 'JSON line that is not JSON', name: 'broken.jsonl', content: '{"a":1,"label":"x"}\n{"a":2,"label":}\n', error: 'MalformedInputError', line: 2, column: 16 },
  { what: 'one class only', name: 'oneclass.csv', content: 'a,label\n1,x\n2,x\n', error: 'UnusableInputError', line: 3, column: 2 }
]

test('bad input: a named error with file, line and column, and nothing written', async () => {
  const dir = tempDir()
  try {
    for (const c of BAD) {
      const file = join(dir, c.name)
      writeFileSync(file, c.content)
      const out = join(dir, `out-${c.name}`)
      await assert.rejects(importDataset(file, { label: 'label', outDir: out, ...c.options }), (err: Error & { file?: string, line?: number, column?: unknown }) => {
        assert.equal(err.name, c.error, `${c.what}: ${err.message}`)
        assert.equal(err.file, file, c.what)
        assert.equal(err.line, c.line, `${c.what}: line (${err.message})`)
        assert.equal(err.column, c.column, `${c.what}: column (${err.message})`)
        assert.ok(err.message.startsWith(`${file}:${c.line}:${c.column}: `), `${c.what}: ${err.message}`)
        return true
      })
      assert.equal(existsSync(out), false, `${c.what}: nothing written`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('CLI: bad input exits 2 with the position; --json prints exactly one object; ls lists it', async () => {
  const dir = tempDir()
  try {
    const bad = join(dir, 'short.csv')
    writeFileSync(bad, 'a,b,label\n1,2,x\n3,y\n')
    const r1 = await capture(['dataset', 'import', bad, '--label', 'label', '--data-dir', dir])
    assert.equal(r1.code, 2)
    assert.match(r1.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:3: row has 2 fields`))
    assert.equal(existsSync(datasetsRoot(dir)), false)

    const good = join(dir, 'reviews.csv')
    writeFileSync(good, CSV)
    const r2 = await capture(['dataset', 'import', good, '--label', 'label', '--text', 'comment', '--ignore', 'id', '--missing', 'fill', '--shards', '2', '--json', '--data-dir', dir])
    assert.equal(r2.code, 0, r2.stderr)
    const lines = r2.stdout.trim().split('\n')
    assert.equal(lines.length, 1)
    const report = JSON.parse(lines[0]) as Record<string, unknown>
    for (const key of ['rowsRead', 'droppedMissing', 'droppedDuplicates', 'rowsWritten', 'columns', 'shards', 'datasetId']) assert.ok(key in report, key)
    assert.equal(report.rowsRead, 10)
    assert.equal(report.rowsWritten, 9)
    assert.ok(existsSync(join(datasetsRoot(dir), report.datasetId as string, DESCRIPTION_FILE)))

    const r3 = await capture(['dataset', 'ls', '--json', '--data-dir', dir])
    assert.equal(r3.code, 0)
    assert.deepEqual((JSON.parse(r3.stdout) as Array<{ id: string }>).map(e => e.id), [report.datasetId])
    const r4 = await capture(['dataset', 'ls', '--data-dir', dir])
    assert.match(r4.stdout, new RegExp(`${report.datasetId as string}  9 rows`))

    const r5 = await capture(['dataset', 'import', good, '--data-dir', dir])
    assert.equal(r5.code, 2)
    assert.match(r5.stderr, /--label/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
