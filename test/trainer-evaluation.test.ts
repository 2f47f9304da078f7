/**
 * A swarm's evaluation, split between its members, through the trainer machine: two trainer machines summing
 * their updates with the real ring over TCP sockets each evaluate half the test rows at an epoch's end, and the
 * next round sums the halves. Both report the same figures, those of one member evaluating every test row of
 * the same weights; the last epoch's evaluation is every row on each member (no round follows it). Where the
 * sum lacks rows (here: members that place themselves in a group of 3), each member evaluates every row itself,
 * still of the evaluated weights.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createActor, toPromise } from 'xstate'
import { Level } from 'level'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { RowSet } from '../node/data/stream/index.ts'
import { CheckpointStore, Trainer, createTrainerLogic, selectBackend } from '../node/trainer/index.ts'
import type { BinaryStore, Evaluation } from '../node/trainer/index.ts'
import { evaluateNet } from '../node/trainer/trainer.ts'
import type { Ring } from '../node/ring/index.ts'
import { startTcpRings, stopRings } from './helpers/tcp-rings.ts'

await selectBackend('wasm')

interface Seen {
  evaluation: Evaluation
  /** Every test row evaluated by this member, of the weights it had when the evaluation was reported. */
  full: { loss: number, accuracy: number }
  step: number
}

async function trainPair (count: number): Promise<{ seen: Seen[][], parts: number[][], wholes: number[][], hashes: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'peer-eval-'))
  const dataset = loadDataset('mnist')
  const db = new Level<string, Uint8Array>(join(dir, 'db'), { valueEncoding: 'view' })
  const job = parseJob({ hidden: [16], batchSize: 64, seed: 5, epochs: 3 })
  const ids = ['peerA', 'peerB']
  let rings: Ring[] = []
  try {
    rings = await startTcpRings(ids)
    // two shards, one each
    const n = dataset.train.n
    const shardRows = [Math.floor(n / 2), n - Math.floor(n / 2)]
    const trainers = ids.map((_, i) => {
      const t = new Trainer({ job, jobId: jobId(job), dataset, swarm: true, shardRows })
      t.setRows(i === 0 ? RowSet.fromRanges([[0, shardRows[0]]]) : RowSet.fromRanges([[shardRows[0], n]]))
      return t
    })
    const seen: Seen[][] = ids.map(() => [])
    // the steps at which each member evaluated its part, and every row
    const parts: number[][] = ids.map(() => [])
    const wholes: number[][] = ids.map(() => [])
    for (const [i, t] of trainers.entries()) {
      const part = t.evaluatePart.bind(t)
      t.evaluatePart = async (index, of) => {
        parts[i].push(t.progress.step)
        await part(index, of)
      }
      const whole = t.evaluate.bind(t)
      t.evaluate = async () => {
        wholes[i].push(t.progress.step)
        return await whole()
      }
    }
    const actors = trainers.map((trainer, i) => {
      const store = db.sublevel<string, Uint8Array>(`ckpt-${i}`, { valueEncoding: 'view' }) as unknown as BinaryStore
      return createActor(createTrainerLogic(() => trainer, new CheckpointStore(store), {
        allReduce: async vector => {
          const round = trainer.progress.round
          const result = await rings[i].run({ round, attempt: 0, members: ids, self: ids[i], vector })
          if (!result.ok) throw new Error(`round ${round}: ${result.reason}`)
          return result.sum
        },
        evaluationShard: () => ({ index: i, count }),
        onEvaluation: evaluation => {
          seen[i].push({ evaluation, full: evaluateNet(trainer.net, dataset.test, dataset.classes), step: trainer.progress.step })
        }
      }), { input: { checkpointEvery: 1_000_000 } })
    })
    for (const a of actors) a.start()
    const outputs = await Promise.all(actors.map(async a => await toPromise(a)))
    for (const out of outputs) assert.equal((out as { reason: string }).reason, 'done')
    return { seen, parts, wholes, hashes: trainers.map(t => t.weightsHash()) }
  } finally {
    await stopRings(rings)
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

test('2 trainers split each epoch\'s evaluation in halves and report what one evaluating every row reports', async () => {
  const { seen, parts, wholes, hashes } = await trainPair(2)
  assert.equal(hashes[0], hashes[1], 'identical weights')
  for (const [i, s] of seen.entries()) {
    assert.deepEqual(s.map(e => e.evaluation.epoch), [1, 2, 3], `member ${i}: one evaluation an epoch`)
    // epochs 1 and 2 in parts (the round after each sums them); the last on every row, alone
    assert.equal(parts[i].length, 2, `member ${i} evaluated its part at steps ${parts[i].join(', ')}`)
    assert.deepEqual(parts[i], s.slice(0, 2).map(e => e.evaluation.step), 'the part is of the epoch\'s last step')
    assert.deepEqual(wholes[i], [s[2].evaluation.step], `member ${i} evaluated every row only at the end`)
    for (const e of s) {
      // reported before the next update is applied: the weights are still those evaluated
      assert.equal(e.step, e.evaluation.step)
      assert.equal(e.evaluation.accuracy, e.full.accuracy, `epoch ${e.evaluation.epoch}: the rows classified right, summed`)
      assert.ok(Math.abs(e.evaluation.loss - e.full.loss) <= 1e-5 * e.full.loss, `epoch ${e.evaluation.epoch}: loss ${e.evaluation.loss} against ${e.full.loss}`)
    }
  }
  assert.deepEqual(seen[0].map(e => e.evaluation), seen[1].map(e => e.evaluation), 'both members report the same figures')
  assert.ok(seen[0][0].evaluation.accuracy > 0.5, `accuracy ${seen[0][0].evaluation.accuracy}`)
})

test('where the summed parts lack rows, each trainer evaluates every row itself', async () => {
  // each member takes itself for one of 3: two thirds of the rows reach the sum
  const { seen, parts, wholes } = await trainPair(3)
  for (const [i, s] of seen.entries()) {
    assert.equal(parts[i].length, 2, `member ${i} evaluated its part twice`)
    assert.deepEqual(wholes[i], s.map(e => e.evaluation.step), `member ${i} evaluated every row after each part`)
    assert.deepEqual(s.map(e => e.evaluation.epoch), [1, 2, 3])
    for (const e of s) {
      assert.equal(e.step, e.evaluation.step)
      assert.equal(e.evaluation.accuracy, e.full.accuracy)
      assert.equal(e.evaluation.loss, e.full.loss, 'every row, evaluated here')
    }
  }
})
