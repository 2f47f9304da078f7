/**
 * Every row once an epoch, swarm-wide, through the trainer machine: two trainer machines, each on its own
 * shards, summing their updates (and their data positions, node/data/epoch.ts) with the real ring over TCP
 * sockets, train every row of the data set exactly once per epoch between them, also while a shard changes
 * owner (for a few rounds both claim it, as while the manifest's claims settle), and they hold identical
 * weights. The same for batches gathered in memory (mnist) and read from shard files (an imported data set,
 * in small blocks and windows).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createActor, toPromise } from 'xstate'
import { Level } from 'level'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import type { Dataset } from '../node/data/dataset.ts'
import { datasetsRoot, importDataset, readDescription } from '../node/data/imported/index.ts'
import { RowSet, StreamedRows } from '../node/data/stream/index.ts'
import { CheckpointStore, Trainer, createTrainerLogic, selectBackend } from '../node/trainer/index.ts'
import type { BinaryStore } from '../node/trainer/index.ts'
import type { Ring } from '../node/ring/index.ts'
import { startTcpRings, stopRings } from './helpers/tcp-rings.ts'

await selectBackend('wasm')

/** An imported data set of 2,000 rows in 4 shards, its training rows read from the files in blocks of 64 rows, 3 to a window. */
async function importedDataset (dir: string): Promise<Dataset> {
  const lines = ['x1,x2,label']
  for (let i = 0; i < 2000; i++) lines.push(`${(i * 7919) % 1000},${(i * 104729) % 997},${i % 3 === 0 ? 'a' : 'b'}`)
  writeFileSync(join(dir, 'rows.csv'), `${lines.join('\n')}\n`)
  const r = await importDataset(join(dir, 'rows.csv'), { label: 'label', shards: 4, outDir: datasetsRoot(dir) })
  const d = loadDataset(r.datasetId, { dataDir: dir })
  return { ...d, train: new StreamedRows({ dir: r.dir, description: readDescription(r.dir), blockRows: 64, blocksPerWindow: 3, decode: 'inline' }) }
}

for (const kind of ['in memory', 'streamed'] as const) test(`2 peers reducing with the ring train every row once per epoch between them, a shard changing owner (${kind === 'in memory' ? 'mnist, in memory' : 'an imported data set, read from its shard files'})`, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peer-order-'))
  const dataset = kind === 'in memory' ? loadDataset('mnist') : await importedDataset(dir)
  const n = dataset.train.n
  // 4 shards of unequal sizes (the imported set's own; mnist cut by hand)
  const shardRows = kind === 'in memory' ? [Math.floor(n * 0.3), Math.floor(n * 0.2), Math.floor(n * 0.15)] : undefined
  if (shardRows !== undefined) shardRows.push(n - shardRows.reduce((a, b) => a + b, 0))
  const db = new Level<string, Uint8Array>(join(dir, 'db'), { valueEncoding: 'view' })
  const job = parseJob({ hidden: [16], batchSize: kind === 'in memory' ? 64 : 16, seed: 5 })
  const ids = ['peerA', 'peerB']
  let rings: Ring[] = []
  try {
    rings = await startTcpRings(ids)
    /** Rows trained in each epoch, by either peer. */
    const trained = new Map<number, number[]>()
    const trainers = ids.map(() => new Trainer({ job, jobId: jobId(job), dataset, swarm: true, ...(shardRows !== undefined ? { shardRows } : {}) }))
    const starts = [0]
    for (const s of trainers[0].data.shardStarts.slice(1)) starts.push(s)
    const rowsOf = (shards: number[]): RowSet => RowSet.fromRanges(shards.map(k => [starts[k], starts[k + 1]]))
    // A owns shards 0 and 1, B 2 and 3; from round `moveAt` B claims shard 1 as well, and A lets it go 3 rounds later
    const moveAt = 20
    const owns = (i: number, round: number): number[] => i === 0 ? (round < moveAt + 3 ? [0, 1] : [0]) : (round < moveAt ? [2, 3] : [1, 2, 3])
    let stopAt = Number.POSITIVE_INFINITY
    for (const [i, t] of trainers.entries()) {
      const compute = t.computeUpdate.bind(t)
      t.computeUpdate = async () => {
        t.setRows(rowsOf(owns(i, t.progress.round)))
        const epoch = t.data.epoch
        const update = await compute()
        const seen = trained.get(epoch) ?? []
        seen.push(...t.lastBatchRows.subarray(0, update.samples))
        trained.set(epoch, seen)
        return update
      }
    }
    const actors: Array<ReturnType<typeof createActor>> = []
    for (const [i, trainer] of trainers.entries()) {
      const store = db.sublevel<string, Uint8Array>(`ckpt-${i}`, { valueEncoding: 'view' }) as unknown as BinaryStore
      const logic = createTrainerLogic(() => trainer, new CheckpointStore(store), {
        allReduce: async vector => {
          const round = trainer.progress.round
          const result = await rings[i].run({ round, attempt: 0, members: ids, self: ids[i], vector })
          if (!result.ok) throw new Error(`round ${round}: ${result.reason}`)
          // both stop after the same round (once the second epoch is over), at the next loop boundary
          if (trainer.data.epoch >= 2 && stopAt === Number.POSITIVE_INFINITY) stopAt = round + 5
          if (round + 1 >= stopAt) actors[i].send({ type: 'trainer.stop' })
          return result.sum
        }
      })
      actors.push(createActor(logic, { input: { checkpointEvery: 1_000_000 } }))
    }
    for (const a of actors) a.start()
    const outputs = await Promise.all(actors.map(async a => await toPromise(a)))
    for (const out of outputs) assert.equal((out as { reason: string }).reason, 'stopped')
    assert.equal(trainers[0].weightsHash(), trainers[1].weightsHash(), 'identical weights after every round')
    assert.equal(trainers[0].progress.round, trainers[1].progress.round)
    assert.ok(trainers[0].data.epoch >= 2, `${trainers[0].data.epoch} epochs`)
    for (const epoch of [0, 1]) {
      const rows = trained.get(epoch) ?? []
      assert.equal(rows.length, n, `epoch ${epoch}: ${rows.length} rows trained, the data set has ${n}`)
      assert.deepEqual([...rows].sort((a, b) => a - b), Array.from({ length: n }, (_, r) => r), `epoch ${epoch}: every row once`)
    }
    assert.equal(trainers[0].progress.samples, trainers[1].progress.samples)
    assert.ok(trainers[0].progress.samples >= 2 * n, 'the samples count what was trained')
    for (const t of trainers) assert.equal(t.data.overTaken, 0)
  } finally {
    await stopRings(rings)
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
})
