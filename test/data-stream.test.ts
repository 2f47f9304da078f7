/**
 * Streaming reads of an imported data set (node/data/stream): blocks stay inside their shard and every row has
 * one; batches read from the shard files hold exactly the rows (features and labels) the dense loader builds,
 * every row once in an epoch of the data position (node/data/epoch.ts); a trainer restored from a checkpoint
 * mid-epoch goes on with the same batches; and only the shards asked for are opened, a missing one through the
 * `ensureShard` hook. The data set has numeric,
 * categorical and text columns, so that every column kind is decoded from sliced record batches; a decode
 * worker that cannot start leaves the work to the calling thread.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { datasetsRoot, importDataset, loadImportedDataset, readDescription, shardPath } from '../node/data/imported/index.ts'
import type { DatasetDescription } from '../node/data/imported/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import type { Batch, Dataset } from '../node/data/dataset.ts'
import { RowSet, StreamedRows, blockOf, blocksOf, loadTestSample } from '../node/data/stream/index.ts'
import { DataEpoch } from '../node/data/epoch.ts'
import { WorkerDecoder } from '../node/data/stream/decoder.ts'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { Trainer, selectBackend } from '../node/trainer/index.ts'

await selectBackend('wasm')

const base = mkdtempSync(join(tmpdir(), 'peer-stream-'))
const rowsIn = ['x1,x2,colour,note,label']
for (let i = 0; i < 3000; i++) {
  const x1 = ((i * 7919) % 1000) / 100
  const x2 = ((i * 104729) % 997) / 100
  rowsIn.push(`${x1},${x2},${['red', 'green', 'blue', 'grey'][i % 4]},word${i % 17} and word${i % 5},${x1 + x2 > 10 ? 'high' : 'low'}`)
}
const csv = join(base, 'points.csv')
writeFileSync(csv, `${rowsIn.join('\n')}\n`)
const holder = join(base, 'holder')
const report = await importDataset(csv, { label: 'label', text: ['note'], buckets: 256, shards: 4, outDir: datasetsRoot(holder) })
const id = report.datasetId
const description: DatasetDescription = readDescription(report.dir)
const dense = loadImportedDataset(report.dir, id)
/** Each shard's first training row, then the row count. */
const starts = [0]
for (const s of description.shards) starts.push(starts[starts.length - 1] + s.rows)
/** Small blocks and windows, so that 2,500 rows make many of each. */
const SMALL = { blockRows: 100, blocksPerWindow: 3 }

/** The data set with small blocks; decoded in this thread unless `decode: 'worker'` (as a trainer does by default). */
function streamed (dataDir = holder, ensureShard?: (shardId: string) => Promise<void>, decode: 'worker' | 'inline' = 'inline'): Dataset {
  const d = loadDataset(id, { dataDir, ...(ensureShard !== undefined ? { ensureShard } : {}) })
  return { ...d, train: new StreamedRows({ dir: join(datasetsRoot(dataDir), id), description, ensureShard, decode, ...SMALL }) }
}

/** Every batch of one epoch of a lone reader's data position over `shards` (all of them by default). */
async function readEpoch (d: Dataset, size = 37, shards = description.shards.map((_, i) => i)): Promise<Batch[]> {
  const epoch = new DataEpoch({ shardRows: description.shards.map(s => s.rows), blockRows: SMALL.blockRows, windowBlocks: SMALL.blocksPerWindow, seed: 11, shared: false })
  const reader = d.train.batches(d.classes)
  const out: Batch[] = []
  try {
    while (epoch.epoch === 0) {
      const rows = epoch.next(shards, size)
      if (rows.length === 0) break
      out.push(await reader.read(rows))
      reader.prefetch(epoch.upcoming(shards))
      const own = new Float32Array(epoch.slots)
      epoch.encode(own, shards)
      epoch.apply(own)
    }
  } finally {
    await reader.close()
  }
  return out
}

test.after(() => { rmSync(base, { recursive: true, force: true }) })

test('blocks stay inside their shard, aligned to its first row, and every row has one', () => {
  const shardStarts = [0, 250, 500, 900, 1000]
  const rows = RowSet.fromRanges([[120, 640], [900, 1000]])
  const blocks = blocksOf(rows, shardStarts, 64)
  for (const b of blocks) {
    assert.ok(b.start >= shardStarts[b.shard] && b.end <= shardStarts[b.shard + 1], 'a block stays in its shard')
    assert.ok(b.end - b.start <= 64)
    // aligned to its shard's first row: the same row is in the same block whatever else the set holds
    assert.equal(Math.floor((b.start - shardStarts[b.shard]) / 64), Math.floor((b.end - 1 - shardStarts[b.shard]) / 64))
  }
  assert.deepEqual(blocks.flatMap(b => Array.from({ length: b.end - b.start }, (_, i) => b.start + i)), [...rows.toArray()])
  const whole = blocksOf(RowSet.all(1000), shardStarts, 64)
  for (const b of whole) for (let r = b.start; r < b.end; r++) assert.deepEqual(blockOf(shardStarts, 64, r), b, `row ${r}`)
})

for (const decode of ['worker', 'inline'] as const) test(`batches read from the shard files (decoded ${decode === 'worker' ? 'in a worker thread' : 'inline'}) hold the rows the dense loader builds, each once per epoch`, async () => {
  const d = streamed(holder, undefined, decode)
  assert.equal(d.train.examples, null, 'not in memory')
  assert.equal(d.train.n, dense.train.n)
  assert.deepEqual(d.test, dense.test, 'a small test split is kept whole')
  const batches = await readEpoch(d)
  const f = d.features
  const seen: number[] = []
  for (const b of batches) {
    for (let i = 0; i < b.n; i++) {
      const r = b.rows[i]
      seen.push(r)
      assert.deepEqual(b.x.subarray(i * f, (i + 1) * f), dense.train.x.subarray(r * f, (r + 1) * f), `row ${r}'s features`)
      assert.equal(b.y[i * d.classes + dense.train.y[r]], 1, `row ${r}'s label`)
    }
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [...RowSet.all(d.train.n).toArray()], 'every row once')
  // shuffled across shards, not shard after shard
  const shardOf = (r: number): number => { let k = 0; while (r >= starts[k + 1]) k++; return k }
  const firstWindow = new Set(seen.slice(0, 300).map(shardOf))
  assert.ok(firstWindow.size > 1, 'the first window mixes shards')
})

test('a trainer restored from its checkpoint mid-epoch reads the same batches as one that went on', async () => {
  const job = parseJob({ hidden: [8], batchSize: 64, seed: 4, epochs: 1 })
  const d = streamed()
  const a = new Trainer({ job, jobId: jobId(job), dataset: d })
  const step = async (t: Trainer): Promise<Uint32Array> => {
    const u = await t.computeUpdate()
    t.applyUpdate(u)
    return t.lastBatchRows
  }
  try {
    for (let i = 0; i < 20; i++) await step(a)
    const ckpt = await a.capture()
    assert.ok(ckpt.progress.samples > 0 && ckpt.progress.samples < d.train.n, 'mid-epoch')
    const b = new Trainer({ job, jobId: jobId(job), dataset: streamed() })
    try {
      await b.restore(ckpt)
      for (let i = 0; i < 30; i++) assert.deepEqual(await step(b), await step(a), `step ${20 + i}`)
      assert.equal(b.weightsHash(), a.weightsHash())
    } finally {
      b.dispose()
    }
  } finally {
    a.dispose()
  }
})

test('only the shards asked for are opened; a missing one is asked for through ensureShard', async () => {
  const dataDir = join(base, 'partial')
  cpSync(join(datasetsRoot(holder), id), join(datasetsRoot(dataDir), id), { recursive: true })
  const missing = description.shards[2]
  rmSync(shardPath(join(datasetsRoot(dataDir), id), missing))
  assert.throws(() => loadDataset(id, { dataDir }), { name: 'IncompleteDatasetError' }, 'without a hook every shard must be here')
  const asked: string[] = []
  let fetch = false
  const d = streamed(dataDir, async shardId => {
    asked.push(shardId)
    if (fetch) copyFileSync(shardPath(report.dir, missing), shardPath(join(datasetsRoot(dataDir), id), missing))
  })
  const mine = RowSet.fromRanges([[starts[0], starts[2]], [starts[3], starts[4]]])
  const got = (await readEpoch(d, 37, [0, 1, 3])).flatMap(b => [...b.rows])
  assert.equal(got.length, mine.size)
  assert.ok(got.every(r => mine.has(r)))
  assert.deepEqual(asked, [], 'shards 0, 1 and 3 are here: nothing asked for')
  const theirs = RowSet.fromRanges([[starts[2], starts[3]]])
  await assert.rejects(readEpoch(d, 37, [2]), { name: 'IncompleteDatasetError' }, 'the hook did not bring it')
  assert.deepEqual(asked, ['s0002'])
  fetch = true
  const fetched = (await readEpoch(d, 37, [2])).flatMap(b => [...b.rows])
  assert.deepEqual([...fetched].sort((a, b) => a - b), [...theirs.toArray()])
  assert.deepEqual(asked, ['s0002', 's0002'])
})

test('a large test split is an evenly spread sample of the test shard, read a record batch at a time', () => {
  const f = description.features
  const keep = 100
  const sample = loadTestSample(report.dir, description, keep * f * 4)
  assert.equal(sample.n, keep)
  const total = dense.test.n
  const rows = Array.from({ length: total }, (_, r) => r).filter(r => Math.floor((r + 1) * keep / total) > Math.floor(r * keep / total))
  assert.equal(rows.length, keep)
  rows.forEach((r, i) => {
    assert.deepEqual(sample.x.subarray(i * f, (i + 1) * f), dense.test.x.subarray(r * f, (r + 1) * f), `test row ${r}`)
    assert.equal(sample.y[i], dense.test.y[r])
  })
  // a test shard whose bytes changed is refused
  const dataDir = join(base, 'corrupt')
  cpSync(report.dir, join(datasetsRoot(dataDir), id), { recursive: true })
  const file = shardPath(join(datasetsRoot(dataDir), id), description.test)
  const bytes = readFileSync(file)
  bytes[bytes.length >> 1] ^= 1
  writeFileSync(file, bytes)
  assert.throws(() => loadTestSample(join(datasetsRoot(dataDir), id), description), { name: 'CorruptDatasetError' })
})

test('a decode worker that cannot start leaves the decoding to this thread', async () => {
  const decoder = new WorkerDecoder(description, new URL('./no-such-worker.ts', import.meta.url))
  try {
    const got = await decoder.decode(shardPath(report.dir, description.shards[1]), description.shards[1], 10, 20)
    const f = description.features
    assert.deepEqual(got.x, dense.train.x.subarray((starts[1] + 10) * f, (starts[1] + 20) * f))
    assert.ok(decoder.inline !== null, 'decoding inline')
  } finally {
    await decoder.close()
  }
})
