/**
 * Gradients and evaluations computed in a worker thread (node/trainer/compute.ts) are the trainer's own, bit
 * for bit: a trainer that computes in a worker and one that computes on its own thread, from the same job,
 * take the same batches, end every step with the same weights and score the same test loss and accuracy (mlp with Adam; the cnn preset; a user's Layers model
 * with batch normalisation, whose moving statistics come back as values, and dropout, whose masks the step
 * seeds). A worker whose net does not match the trainer's refuses to start, and a closed one fails the
 * next batch with a clear error instead of hanging.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs'
import { jobId, parseJob } from '../protocols/job/index.ts'
import type { Job } from '../protocols/job/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { ComputeWorker, ComputeWorkerError, Trainer, createLayersNet, selectBackend } from '../node/trainer/index.ts'
import type { LayersModelSource } from '../node/trainer/index.ts'
import { kerasStyleCnn } from './helpers/layers-model.ts'

await selectBackend('wasm')
const dataset = loadDataset('mnist')
const shape = { inputShape: dataset.inputShape, features: dataset.features, classes: dataset.classes }

async function stepOf (t: Trainer): Promise<number> {
  const update = await t.computeUpdate()
  const loss = update.loss
  t.applyUpdate(t.unflattenUpdate(t.flattenUpdate(update), loss))
  return loss
}

async function sameSteps (job: Job, steps: number, model: LayersModelSource | null = null): Promise<void> {
  const netOf = async () => model === null ? {} : { net: await createLayersNet(model, { features: dataset.features, classes: dataset.classes, seed: job.seed }) }
  const inline = new Trainer({ job, jobId: jobId(job), dataset, ...await netOf() })
  const sizes = inline.net.variables.map(v => v.size)
  const compute = await ComputeWorker.start({ job, shape, model, sizes })
  const remote = new Trainer({ job, jobId: jobId(job), dataset, compute, ...await netOf() })
  try {
    assert.equal(remote.weightsHash(), inline.weightsHash())
    for (let s = 0; s < steps; s++) {
      const a = await stepOf(inline)
      const b = await stepOf(remote)
      assert.equal(b, a, `step ${s}: the loss`)
      assert.equal(remote.weightsHash(), inline.weightsHash(), `step ${s}: the weights`)
    }
    assert.equal(remote.progress.step, steps)
    assert.deepEqual(await remote.evaluate(), await inline.evaluate(), 'the test loss and accuracy')
    // a part of a sharded evaluation (the middle third of the test rows), as the next update vector carries it
    const part = async (t: Trainer): Promise<number[]> => {
      await t.evaluatePart(1, 3)
      const v = t.flattenUpdate(await t.computeUpdate())
      return [...v.subarray(v.length - 3)]
    }
    const [lossSum, right, rows] = await part(remote)
    assert.deepEqual([lossSum, right, rows], await part(inline), 'the part\'s loss sum, rows right, rows')
    const n = dataset.test.n
    assert.equal(rows, Math.floor(2 * n / 3) - Math.floor(n / 3))
    assert.ok(right > 0 && right <= rows && lossSum > 0, `part: ${lossSum}, ${right} of ${rows}`)
  } finally {
    inline.dispose()
    remote.dispose()
  }
}

test('a worker computes the same gradients as the trainer itself: mlp, Adam, 20 steps', async () => {
  await sameSteps(parseJob({ hidden: [64, 32], batchSize: 32, seed: 7, optimizer: 'adam', learningRate: 0.001 }), 20)
})

test('a worker computes the same gradients as the trainer itself: the cnn preset, 3 steps', async () => {
  await sameSteps(parseJob({ model: 'cnn', batchSize: 16, seed: 11 }), 3)
})

test('a worker computes the same gradients as the trainer itself: a Layers model with batch norm and dropout, 4 steps', async () => {
  let modelTopology: Record<string, unknown> | null = null
  const keras = kerasStyleCnn()
  await keras.save(tf.io.withSaveHandler(async a => {
    modelTopology = a.modelTopology as Record<string, unknown>
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
  }))
  keras.dispose()
  assert.ok(modelTopology !== null)
  await sameSteps(parseJob({ batchSize: 16, seed: 13 }), 4, { id: 'mdl-compute-worker-test', modelTopology, weights: null })
})

test('a worker whose net does not match the trainer\'s does not start; a closed one fails the next batch', async () => {
  const job = parseJob({ hidden: [16], batchSize: 8, seed: 1 })
  const t = new Trainer({ job, jobId: jobId(job), dataset })
  try {
    const sizes = t.net.variables.map(v => v.size)
    await assert.rejects(ComputeWorker.start({ job, shape, model: null, sizes: [...sizes, 3] }), (err: Error) => err instanceof ComputeWorkerError && /variables of/.test(err.message))
    const w = await ComputeWorker.start({ job, shape, model: null, sizes })
    w.close()
    await assert.rejects(w.gradients(t.net.variables.map(v => new Float32Array(v.size)), { x: new Float32Array(784), y: new Float32Array(10), n: 1 }, 0), ComputeWorkerError)
  } finally {
    t.dispose()
  }
})
