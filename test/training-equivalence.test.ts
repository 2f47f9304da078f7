/**
 * Data parallelism is exact: two peers that each compute the gradient of
 * their own batch, sum the sample-weighted gradients (what the ring returns)
 * and apply the average, end with the same weights as one process training on
 * the union of their batches.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { gatherBatch, loadDataset } from '../node/data/dataset.ts'
import type { Examples } from '../node/data/dataset.ts'
import { Trainer, selectBackend } from '../node/trainer/index.ts'
import type { Update } from '../node/trainer/index.ts'
import { simdKernelsOf, sumBuffer } from '../node/ring/index.ts'

await selectBackend('wasm')
const dataset = loadDataset('mnist')

function trainer (): Trainer {
  const job = parseJob({ hidden: [32], batchSize: 16, seed: 3, optimizer: 'sgd', learningRate: 0.5 })
  return new Trainer({ job, jobId: jobId(job), dataset })
}

function gradientOf (t: Trainer, rows: number[]): Update {
  const b = gatherBatch(dataset.train.examples as Examples, rows, 0, rows.length, dataset.classes)
  const { loss, grads } = tf.tidy(() => t.net.lossAndGrads(tf.tensor2d(b.x, [b.n, dataset.features]), tf.tensor2d(b.y, [b.n, dataset.classes])))
  const value = loss.dataSync()[0]
  loss.dispose()
  return { grads, loss: value, samples: b.n }
}

test('2 peers summing weighted gradients end where one process on the union of their batches ends', () => {
  const a = trainer()
  const b = trainer()
  const one = trainer()
  assert.equal(a.weightsHash(), one.weightsHash(), 'same seed, same start')
  for (let step = 0; step < 4; step++) {
    // unequal batches on purpose: the average must weight by samples
    const rowsA = Array.from({ length: 16 }, (_, i) => step * 64 + i)
    const rowsB = Array.from({ length: 24 }, (_, i) => step * 64 + 32 + i)
    const sum = a.flattenUpdate(gradientOf(a, rowsA))
    const vb = b.flattenUpdate(gradientOf(b, rowsB))
    for (let i = 0; i < sum.length; i++) sum[i] += vb[i]
    assert.equal(sum[a.parameterCount], 40, 'the element after the gradients counts the samples')
    a.applyUpdate(a.unflattenUpdate(sum, 0), 16)
    b.applyUpdate(b.unflattenUpdate(sum, 0), 24)
    one.applyUpdate(gradientOf(one, [...rowsA, ...rowsB]))
  }
  assert.equal(a.weightsHash(), b.weightsHash(), 'the two peers hold identical weights')
  const wa = a.flatWeights()
  const w1 = one.flatWeights()
  let maxDiff = 0
  for (let i = 0; i < wa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(wa[i] - w1[i]))
  assert.ok(maxDiff < 1e-5, `max difference to the single process: ${maxDiff}`)
  // and a peer that averaged unweighted would not match
  const naive = trainer()
  for (let step = 0; step < 4; step++) {
    const ga = gradientOf(naive, Array.from({ length: 16 }, (_, i) => step * 64 + i))
    const gb = gradientOf(naive, Array.from({ length: 24 }, (_, i) => step * 64 + 32 + i))
    const avg = ga.grads.map((g, i) => tf.tidy(() => g.add(gb.grads[i]).div(2)))
    for (const g of [...ga.grads, ...gb.grads]) g.dispose()
    naive.applyUpdate({ grads: avg, loss: 0, samples: 40 })
  }
  const wn = naive.flatWeights()
  let naiveDiff = 0
  for (let i = 0; i < wn.length; i++) naiveDiff = Math.max(naiveDiff, Math.abs(wn[i] - w1[i]))
  assert.ok(naiveDiff > 1e-4, `an unweighted average is measurably different (${naiveDiff})`)
  for (const t of [a, b, one, naive]) t.dispose()
})

test('the update vector is each gradient times the batch\'s samples, and the sum back is divided by the total, bit for bit as float32 (SIMD or not)', () => {
  const t = trainer()
  const params = t.parameterCount
  const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)
  const update = gradientOf(t, Array.from({ length: 24 }, (_, i) => 100 + i))
  const grads = Float32Array.from(update.grads.flatMap(g => Array.from(g.dataSync())))
  const vector = t.flattenUpdate(update)
  assert.notEqual(simdKernelsOf(vector), null, 'the vector is scaled in SIMD')
  assert.equal(vector[params], 24)
  assert.deepEqual(bits(vector.subarray(0, params)), bits(grads.map(g => g * 24)))
  const total = 24 + 17 // as if another member added 17 samples' worth
  for (const sum of [sumBuffer(vector.length), new Float32Array(vector.length)]) {
    sum.set(vector)
    sum[params] = total
    const back = t.unflattenUpdate(sum, 0, true)
    assert.equal(back.samples, total)
    const values = Float32Array.from(back.grads.flatMap(g => Array.from(g.dataSync())))
    assert.deepEqual(bits(values), bits(vector.subarray(0, params).map(v => v / total)), simdKernelsOf(sum) !== null ? 'a sum buffer' : 'a plain array')
    for (const g of back.grads) g.dispose()
  }
  t.dispose()
})

test('H > 1: averaging deltas with outer lr 1 and no momentum is the average of the members\' weights', () => {
  const job = parseJob({ hidden: [16], batchSize: 16, seed: 5, syncEvery: 2, outerLearningRate: 1, outerMomentum: 0, optimizer: 'sgd', learningRate: 0.3 })
  const mk = (): Trainer => new Trainer({ job, jobId: jobId(job), dataset })
  const a = mk()
  const b = mk()
  for (const [t, offset] of [[a, 0], [b, 100]] as const) {
    t.deltaVector() // fixes the anchor before the local steps
    for (let s = 0; s < 2; s++) t.applyUpdate(gradientOf(t, Array.from({ length: 16 }, (_, i) => offset + s * 16 + i)), 16)
    assert.ok(t.syncDue)
  }
  const wa = a.flatWeights()
  const wb = b.flatWeights()
  const sum = a.deltaVector()
  const vb = b.deltaVector()
  for (let i = 0; i < sum.length; i++) sum[i] += vb[i]
  a.applyOuter(sum)
  b.applyOuter(sum)
  assert.equal(a.weightsHash(), b.weightsHash())
  const w = a.flatWeights()
  let maxDiff = 0
  for (let i = 0; i < w.length; i++) maxDiff = Math.max(maxDiff, Math.abs(w[i] - (wa[i] + wb[i]) / 2))
  assert.ok(maxDiff < 1e-6, `outer step with lr 1 lands on the mean of the members' weights (${maxDiff})`)
  assert.equal(a.progress.round, 1)
  assert.equal(a.progress.samples, 64)
  a.dispose()
  b.dispose()
})

test('lrScaling: a round over k batches\' worth of samples steps at the job\'s rate · k (linear) or · √k (sqrt), bit for bit; a short one at the job\'s rate', () => {
  for (const optimizer of ['sgd', 'momentum', 'adam'] as const) {
    for (const [rule, factor] of [['linear', 4], ['sqrt', 2]] as const) {
      const mk = (extra: Record<string, unknown>): Trainer => {
        const job = parseJob({ hidden: [16], batchSize: 16, seed: 7, optimizer, learningRate: 0.001, ...extra })
        return new Trainer({ job, jobId: jobId(job), dataset })
      }
      const scaled = mk({ lrScaling: rule })
      const fixed = mk({ learningRate: 0.001 * factor })
      const plain = mk({})
      // 4 peers' full batches: 64 samples with batchSize 16
      const rows = Array.from({ length: 64 }, (_, i) => i)
      for (let step = 0; step < 3; step++) {
        scaled.applyUpdate(gradientOf(scaled, rows))
        fixed.applyUpdate(gradientOf(fixed, rows))
      }
      assert.equal(scaled.learningRate, 0.001 * factor, `${optimizer} ${rule}: the rate of the last step`)
      assert.equal(scaled.weightsHash(), fixed.weightsHash(), `${optimizer} ${rule}: the same steps as a job whose rate is ${factor}x`)
      assert.notEqual(scaled.weightsHash(), plain.weightsHash())
      // a short round (fewer samples than one batch) keeps the job's rate: the same step as a job without scaling
      const short = Array.from({ length: 8 }, (_, i) => 100 + i)
      const a = mk({ lrScaling: rule })
      a.applyUpdate(gradientOf(a, short))
      plain.applyUpdate(gradientOf(plain, short))
      assert.equal(a.learningRate, 0.001)
      assert.equal(a.weightsHash(), plain.weightsHash(), `${optimizer} ${rule}: a short round steps at the job's rate`)
      for (const t of [scaled, fixed, plain, a]) t.dispose()
    }
  }
  assert.throws(() => parseJob({ lrScaling: 'sqrt', syncEvery: 4 }), /lrScaling.*H = 1/)
  assert.throws(() => parseJob({ lrScaling: 'cubic' }), /lrScaling/)
})
