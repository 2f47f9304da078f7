/**
 * `node scripts/bench-stream.ts [rows]`: batches per second read from an
 * imported data set's shard files (node/data/stream: a window at a time,
 * read ahead) against the same batches gathered from the data set held
 * dense in memory, in one run, on a generated CSV (two numeric columns and
 * four categorical ones of 100 values: 402 features), batch 256. Prints
 * samples/s of each, their ratio, and the process's peak RSS after each;
 * then the same for training steps (an MLP with hidden 64, wasm backend),
 * where the streamed reads compete with the step's compute.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { MemoryRows, loadDataset } from '../node/data/dataset.ts'
import type { TrainingRows } from '../node/data/dataset.ts'
import { datasetsRoot, importDataset, loadImportedDataset, readDescription } from '../node/data/imported/index.ts'
import { StreamedRows } from '../node/data/stream/index.ts'
import { DataEpoch } from '../node/data/epoch.ts'
import type { Dataset } from '../node/data/dataset.ts'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { Trainer, selectBackend } from '../node/trainer/index.ts'

const ROWS = Number(process.argv[2] ?? 250_000)
const BATCH = 256
const PASSES = 2

const dir0 = mkdtempSync(join(tmpdir(), 'peer-bench-stream-'))
try {
  let seed = 1
  const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 }
  const lines = ['a,b,c0,c1,c2,c3,label']
  for (let i = 0; i < ROWS; i++) {
    const a = rand()
    const b = rand()
    lines.push(`${a.toFixed(4)},${b.toFixed(4)},${[0, 1, 2, 3].map(() => `k${Math.floor(rand() * 100)}`).join(',')},${a + b > 1 ? 'hi' : 'lo'}`)
  }
  const csv = join(dir0, 'bench.csv')
  writeFileSync(csv, `${lines.join('\n')}\n`)
  const report = await importDataset(csv, { label: 'label', outDir: datasetsRoot(dir0) })
  const streamed = loadDataset(report.datasetId, { dataDir: dir0 })
  console.log(`${report.trainRows} training rows × ${report.features} features (${(report.trainRows * report.features * 4 / 1024 ** 2).toFixed(0)} MB dense), batch ${BATCH}, ${PASSES} epochs; load average ${loadavg().map(l => l.toFixed(2)).join(' ')}`)

  const measure = async (name: string, rows: TrainingRows): Promise<number> => {
    const reader = rows.batches(streamed.classes)
    // a lone member's data position: every row once an epoch, read a window of blocks at a time
    const shardRows = rows.shardRows ?? [rows.n]
    const epoch = new DataEpoch({ shardRows, blockRows: rows.blockRows, windowBlocks: rows.windowBlocks, seed: 7, shared: false })
    const mine = shardRows.map((_, i) => i)
    const own = new Float32Array(epoch.slots)
    let samples = 0
    const started = performance.now()
    while (epoch.epoch < PASSES) {
      const batch = epoch.next(mine, BATCH)
      samples += (await reader.read(batch)).n
      reader.prefetch(epoch.upcoming(mine))
      epoch.encode(own, mine)
      epoch.apply(own)
    }
    const s = (performance.now() - started) / 1000
    await reader.close()
    const rate = samples / s
    console.log(`${name.padEnd(28)} ${Math.round(rate).toLocaleString('en').padStart(12)} samples/s  (${s.toFixed(2)} s; peak RSS so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB)`)
    return rate
  }
  const fromFiles = await measure('streamed from shard files', streamed.train)
  const loadStarted = performance.now()
  const dense = loadImportedDataset(join(datasetsRoot(dir0), report.datasetId))
  console.log(`dense load: ${((performance.now() - loadStarted) / 1000).toFixed(2)} s`)
  const inMemory = await measure('in memory (dense)', new MemoryRows(dense.train))
  console.log(`streamed / in memory: ${(fromFiles / inMemory).toFixed(2)}`)

  await selectBackend('wasm')
  const job = parseJob({ dataset: report.datasetId, hidden: [64], batchSize: BATCH, seed: 7 })
  const train = async (name: string, dataset: Dataset): Promise<number> => {
    const t = new Trainer({ job, jobId: jobId(job), dataset })
    const steps = Math.ceil(dataset.train.n / BATCH)
    const started = performance.now()
    let samples = 0
    for (let i = 0; i < steps; i++) {
      const u = await t.computeUpdate()
      samples += u.samples
      t.applyUpdate(u)
    }
    const s = (performance.now() - started) / 1000
    const stats = (t as unknown as { batches: { stats?: { blocks: number, waits: number, waitMs: number } } }).batches.stats
    if (stats !== undefined) console.log(`  ${stats.blocks} blocks loaded; ${stats.waits} reads waited for theirs, ${(stats.waitMs / 1000).toFixed(2)} s in all`)
    t.dispose()
    console.log(`${name.padEnd(28)} ${Math.round(samples / s).toLocaleString('en').padStart(12)} samples/s  (${steps} steps, ${s.toFixed(2)} s)`)
    return samples / s
  }
  const dir = join(datasetsRoot(dir0), report.datasetId)
  const inline = { ...streamed, train: new StreamedRows({ dir, description: readDescription(dir), decode: 'inline' }) }
  const trainStreamed = await train('train, streamed (worker)', streamed)
  const trainInline = await train('train, streamed (inline)', inline)
  const trainMemory = await train('train, in memory', { ...streamed, train: new MemoryRows(dense.train) })
  console.log(`training: streamed / in memory: ${(trainStreamed / trainMemory).toFixed(2)} (decoded in a worker), ${(trainInline / trainMemory).toFixed(2)} (inline); load average ${loadavg().map(l => l.toFixed(2)).join(' ')}`)
} finally {
  rmSync(dir0, { recursive: true, force: true })
}
