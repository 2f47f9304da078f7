import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { Level } from 'level'
import { parseJob, jobId } from '../protocols/job/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { CheckpointStore, Trainer, decodeCheckpoint, encodeCheckpoint, selectBackend } from '../node/trainer/index.ts'
import type { BinaryStore, Checkpoint } from '../node/trainer/index.ts'
import { tempDir } from './helpers/peer-process.ts'

await selectBackend('wasm')
const dataset = loadDataset('mnist')

function newTrainer (seed = 7): Trainer {
  const job = parseJob({ hidden: [32], batchSize: 32, seed })
  return new Trainer({ job, jobId: jobId(job), dataset })
}

async function steps (trainer: Trainer, n: number): Promise<void> {
  for (let i = 0; i < n; i++) trainer.applyUpdate(await trainer.computeUpdate())
}

test('encode/decode round-trips every tensor and field', () => {
  const ckpt: Checkpoint = {
    jobId: 'abc',
    progress: { step: 5, round: 5, samples: 160 },
    loss: 0.5,
    evaluation: { epoch: 1, step: 4, loss: 0.6, accuracy: 0.8 },
    weights: [{ name: 'w', shape: [2, 3], values: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    optimizer: [{ name: 'iter', shape: [], values: Float32Array.from([5]) }],
    createdAt: 123
  }
  const back = decodeCheckpoint(encodeCheckpoint(ckpt))
  assert.deepEqual(back.progress, ckpt.progress)
  assert.deepEqual(back.evaluation, ckpt.evaluation)
  assert.deepEqual(Array.from(back.weights[0].values), [1, 2, 3, 4, 5, 6])
  assert.deepEqual(back.weights[0].shape, [2, 3])
  assert.deepEqual(Array.from(back.optimizer[0].values), [5])
})

test('a damaged checkpoint is reported, not loaded', () => {
  const bytes = encodeCheckpoint({
    jobId: 'abc', progress: { step: 1, round: 1, samples: 32 }, loss: null, evaluation: null,
    weights: [{ name: 'w', shape: [4], values: Float32Array.from([1, 2, 3, 4]) }], optimizer: [], createdAt: 0
  })
  const flipped = bytes.slice()
  flipped[flipped.length - 1] ^= 0xff
  assert.throws(() => decodeCheckpoint(flipped), { name: 'CorruptCheckpointError', message: /hash/ })
  assert.throws(() => decodeCheckpoint(bytes.subarray(0, 10)), { name: 'CorruptCheckpointError' })
  assert.throws(() => decodeCheckpoint(new Uint8Array([255, 255, 255, 255])), { name: 'CorruptCheckpointError' })
})

test('a trainer restored from LevelDB continues exactly as the original', async () => {
  const dir = await tempDir()
  const db = new Level<string, unknown>(join(dir.path, 'db'))
  try {
    const store = new CheckpointStore(db.sublevel<string, Uint8Array>('checkpoint', { valueEncoding: 'view' }) as unknown as BinaryStore)
    const a = newTrainer()
    await steps(a, 5)
    await store.save(await a.capture())
    const b = newTrainer()
    assert.notEqual(b.weightsHash(), a.weightsHash(), 'a fresh trainer differs from a trained one')
    const loaded = await store.load()
    assert.ok(loaded !== null)
    await b.restore(loaded)
    assert.equal(b.weightsHash(), a.weightsHash())
    assert.deepEqual({ ...b.progress, sinceSyncSteps: 0, sinceSyncSamples: 0 }, { ...a.progress, sinceSyncSteps: 0, sinceSyncSamples: 0 })
    // same weights, same optimizer state, same data position: the next steps agree bit for bit (tfjs's
    // Adam.setWeights recomputes beta^t with pow(); the trainer puts back the running product, or members that
    // synced would drift apart from the others round after round)
    await steps(a, 3)
    await steps(b, 3)
    assert.equal(b.weightsHash(), a.weightsHash(), 'identical weights after the same steps')
    const wa = a.flatWeights()
    const wb = b.flatWeights()
    let maxDiff = 0
    for (let i = 0; i < wa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(wa[i] - wb[i]))
    assert.ok(maxDiff < 1e-5, `max weight difference ${maxDiff}`)
    const fresh = newTrainer()
    await steps(fresh, 3)
    const wf = fresh.flatWeights()
    let freshDiff = 0
    for (let i = 0; i < wa.length; i++) freshDiff = Math.max(freshDiff, Math.abs(wa[i] - wf[i]))
    assert.ok(freshDiff > 1e-3, 'a trainer that did not resume is clearly different')
    fresh.dispose()
    assert.deepEqual(b.progress, { step: 8, round: 8, samples: 8 * 32, sinceSyncSteps: 0, sinceSyncSamples: 0 })
    a.dispose()
    b.dispose()
  } finally {
    await db.close()
    await dir.remove()
  }
})

test('a checkpoint of another job is refused', async () => {
  const a = newTrainer(1)
  const ckpt = await a.capture()
  const b = newTrainer(2)
  await assert.rejects(b.restore(ckpt), { name: 'CheckpointMismatchError' })
  a.dispose()
  b.dispose()
})
