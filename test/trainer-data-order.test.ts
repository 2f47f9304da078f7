/**
 * The data position moves past a peer's own batch, not the swarm's: two trainer machines, each on its own
 * rows, summing their updates with the real ring over TCP sockets, visit every one of their rows exactly once
 * per pass (before, each peer's cursor moved by the swarm's sample count and skipped rows). A shard that
 * changes owner mid-run starts a new pass on both: each pass still visits its row set exactly once, and the
 * swarm keeps every row of the data set in some peer's passes. The same for batches gathered in memory (mnist)
 * and for batches read from shard files (an imported data set, in small blocks and windows).
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
import { Ring, createTcpRingTransport } from '../node/ring/index.ts'
import type { TcpAddress, TcpRingTransport } from '../node/ring/index.ts'

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

for (const kind of ['in memory', 'streamed'] as const) test(`2 peers reducing with the ring visit each of their rows exactly once per pass (${kind === 'in memory' ? 'mnist, in memory' : 'an imported data set, read from its shard files'})`, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peer-order-'))
  const dataset = kind === 'in memory' ? loadDataset('mnist') : await importedDataset(dir)
  const db = new Level<string, Uint8Array>(join(dir, 'db'), { valueEncoding: 'view' })
  const job = parseJob({ hidden: [16], batchSize: 16, seed: 5 })
  const ids = ['peerA', 'peerB']
  // unequal row counts, neither a multiple of the batch: the passes of the two peers do not line up
  const before = [RowSet.fromRanges([[0, 200]]), RowSet.fromRanges([[1000, 1312]])]
  // at round `moveAt`, rows 150..200 (a "shard") move from the first peer to the second
  const moveAt = 70
  const after = [RowSet.fromRanges([[0, 150]]), RowSet.fromRanges([[150, 200], [1000, 1312]])]
  const addresses = new Map<string, TcpAddress>()
  const transports: TcpRingTransport[] = ids.map(self => createTcpRingTransport({ self, resolve: peer => addresses.get(peer) }))
  const rings = transports.map(transport => new Ring({ transport }))
  try {
    for (const [i, r] of rings.entries()) {
      await r.start()
      addresses.set(ids[i], transports[i].address())
    }
    const rounds = 120
    const visits = ids.map(() => new Map<number, number[]>())
    /** The row set of each pass of each peer. */
    const passRows = ids.map(() => new Map<number, RowSet>())
    const trainers = ids.map((_, i) => {
      const t = new Trainer({ job, jobId: jobId(job), dataset })
      t.setRows(before[i])
      const compute = t.computeUpdate.bind(t)
      t.computeUpdate = async () => {
        if (t.progress.round === moveAt) t.setRows(after[i])
        const update = await compute()
        const { pass } = t.progress
        passRows[i].set(pass, t.progress.round < moveAt ? before[i] : after[i])
        const seen = visits[i].get(pass) ?? []
        seen.push(...t.lastBatchRows)
        visits[i].set(pass, seen)
        return update
      }
      return t
    })
    const actors: Array<ReturnType<typeof createActor>> = []
    for (const [i, trainer] of trainers.entries()) {
      const store = db.sublevel<string, Uint8Array>(`ckpt-${i}`, { valueEncoding: 'view' }) as unknown as BinaryStore
      const logic = createTrainerLogic(() => trainer, new CheckpointStore(store), {
        allReduce: async vector => {
          const round = trainer.progress.round
          const result = await rings[i].run({ round, attempt: 0, members: ids, self: ids[i], vector })
          if (!result.ok) throw new Error(`round ${round}: ${result.reason}`)
          // both members stop after the same round, at the next loop boundary
          if (round + 1 >= rounds) actors[i].send({ type: 'trainer.stop' })
          return result.sum
        }
      })
      actors.push(createActor(logic, { input: { checkpointEvery: 1_000_000 } }))
    }
    for (const a of actors) a.start()
    const outputs = await Promise.all(actors.map(async a => await toPromise(a)))
    for (const out of outputs) assert.equal((out as { reason: string }).reason, 'stopped')
    assert.equal(trainers[0].weightsHash(), trainers[1].weightsHash(), 'identical weights after every round')
    const covered = new Set<number>()
    for (const [i, t] of trainers.entries()) {
      assert.equal(t.progress.round, rounds)
      for (const [pass, seen] of visits[i]) {
        const set = passRows[i].get(pass) as RowSet
        assert.equal(new Set(seen).size, seen.length, `peer ${i} pass ${pass}: no row twice`)
        assert.ok(seen.every(r => set.has(r)), `peer ${i} pass ${pass}: only its own rows`)
        // a pass that ended (not the one the ownership change cut short, not the last one) visited its set whole
        const ended = pass < t.progress.pass && visits[i].has(pass + 1) && passRows[i].get(pass + 1) === set
        if (ended) assert.deepEqual([...seen].sort((a, b) => a - b), [...set.toArray()], `peer ${i} pass ${pass}: every row once`)
        for (const r of seen) covered.add(r)
      }
      const full = [...visits[i].keys()].filter(pass => pass < t.progress.pass && passRows[i].get(pass + 1) === passRows[i].get(pass))
      assert.ok(full.length >= 2, `peer ${i} completed ${full.length} passes over one row set`)
    }
    assert.equal(covered.size, 512, 'every row of the set was trained on')
  } finally {
    for (const r of rings) await r.stop().catch(() => {})
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
})
