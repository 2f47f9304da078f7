/**
 * `peer dataset import FILE --lm`: text becomes an ordinary imported data set
 * of byte-token windows (every row a window of the text, train and test
 * together every window once), deterministic (the same file, the same id),
 * and bad input (bytes that are not UTF-8, a text too short, --lm with table
 * options) exits 2 naming the problem.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadDataset } from '../node/data/dataset.ts'
import { importLmText, datasetsRoot, readDescription, readShard } from '../node/data/imported/index.ts'
import { RowSet } from '../node/data/stream/rows.ts'
import { runPeer, tempDir } from './helpers/peer-process.ts'

const TEXT = 'Dear list,\n\nthe build is green again — thanks, José! Ünïcödé bytes count as bytes.\n\n'.repeat(40)

test('a text file imports as windows of context + 1 byte tokens, 256 classes, every window once', async () => {
  const dir = await tempDir('peer-lm-')
  try {
    const file = join(dir.path, 'notes.txt')
    writeFileSync(file, TEXT)
    const context = 16
    const report = await importLmText(file, { context, shards: 3, outDir: datasetsRoot(dir.path) })
    const bytes = Buffer.from(TEXT)
    const windows = Math.floor((bytes.length - 1) / context)
    assert.equal(report.features, context + 1)
    assert.equal(report.classes.length, 256)
    assert.equal(report.trainRows + report.testRows, windows)
    assert.equal(report.shards, 3)
    const d = readDescription(join(datasetsRoot(dir.path), report.datasetId))
    assert.deepEqual(d.lm, { context, tokens: 'bytes' })
    // tokens stored as uint8, not float64 (8x the text); the reader gives the trainer the same numbers (checked below)
    assert.ok(d.columns.filter(c => c.name.startsWith('t')).every(c => c.storage === 'uint8'))
    const shard = readShard(join(datasetsRoot(dir.path), report.datasetId, d.shards[0].file))
    assert.equal(String(shard.schema.fields.find(f => f.name === 't0')?.type), 'Uint8')

    const dataset = loadDataset(report.datasetId, { dataDir: dir.path })
    assert.equal(dataset.classes, 256)
    assert.equal(dataset.features, context + 1)
    const reader = dataset.train.batches(dataset.classes)
    const batch = await reader.read(RowSet.all(dataset.train.n).toArray())
    await reader.close()
    const all = new Set<string>()
    for (let k = 0; k < windows; k++) all.add(Array.from(bytes.subarray(k * context, k * context + context + 1)).join(','))
    const seen = new Set<string>()
    const check = (x: Float32Array, y: Float32Array | Uint8Array, n: number, oneHot: boolean): void => {
      for (let r = 0; r < n; r++) {
        const row = Array.from(x.subarray(r * (context + 1), (r + 1) * (context + 1)))
        const key = row.join(',')
        assert.ok(all.has(key), `row ${r} is a window of the text`)
        const label = oneHot ? y.subarray(r * 256, (r + 1) * 256).indexOf(1) : y[r]
        assert.equal(label, row[context], 'the class is the last byte')
        seen.add(key)
      }
    }
    check(batch.x, batch.y, batch.n, true)
    check(dataset.test.x, dataset.test.y, dataset.test.n, false)
    assert.equal(batch.n + dataset.test.n, windows)

    const again = await importLmText(file, { context, shards: 3, outDir: datasetsRoot(dir.path) })
    assert.equal(again.datasetId, report.datasetId)
    assert.equal(again.existing, true)
  } finally {
    await dir.remove()
  }
})

test('peer dataset import --lm: bad input exits 2 and says why', async () => {
  const dir = await tempDir('peer-lm-')
  try {
    const latin1 = join(dir.path, 'latin1.txt')
    writeFileSync(latin1, Buffer.concat([Buffer.from('first line\nsecond caf'), Buffer.from([0xe9]), Buffer.from('\n')]))
    const short = join(dir.path, 'short.txt')
    writeFileSync(short, 'tiny')
    const run = async (...args: string[]) => await runPeer(['dataset', 'import', ...args, '--data-dir', dir.path])
    const bad = await run(latin1, '--lm')
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /latin1\.txt:2:11: byte 0xe9 at offset 21 is not UTF-8/)
    const tooShort = await run(short, '--lm', '--context', '8')
    assert.equal(tooShort.code, 2)
    assert.match(tooShort.stderr, /too short for one window of 9 bytes/)
    const mixed = await run(short, '--lm', '--label', 'x')
    assert.equal(mixed.code, 2)
    assert.match(mixed.stderr, /--lm reads plain text/)
    const noLabel = await run(short)
    assert.equal(noLabel.code, 2)
    assert.match(noLabel.stderr, /--label/)

    // a gpt job on data that is not byte windows of its context is refused before the peer starts
    const text = join(dir.path, 'text.txt')
    writeFileSync(text, TEXT)
    const imported = await run(text, '--lm', '--context', '16', '--json')
    assert.equal(imported.code, 0, imported.stderr)
    const { datasetId } = JSON.parse(imported.stdout) as { datasetId: string }
    const start = async (...args: string[]) => await runPeer(['start', '--data-dir', dir.path, '--open', '--model', 'gpt', ...args])
    const mnist = await start('--dataset', 'mnist')
    assert.equal(mnist.code, 2)
    assert.match(mnist.stderr, /--model gpt needs a language-model data set/)
    const context = await start('--dataset', datasetId, '--context', '32')
    assert.equal(context.code, 2)
    assert.match(context.stderr, /holds windows of context 16/)
  } finally {
    await dir.remove()
  }
})
