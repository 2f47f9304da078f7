/**
 * adamStep (node/trainer/adam.ts) is tf.js's Adam bit for bit: the same weights, moments, β powers and iteration
 * count after every step, on the wasm backend and on the cpu backend, and after a restore through setWeights.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs-core'
import { loadBackend } from '../node/trainer/backend.ts'
import { adamStep, usesAdamStep } from '../node/trainer/adam.ts'

/** A seeded stream of floats in [-scale, scale). */
function floats (seed: number, n: number, scale: number): Float32Array {
  let s = seed >>> 0
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = (s / 2 ** 32 * 2 - 1) * scale
  }
  return out
}

const SHAPES = [[37, 19], [19], [19, 3], [3]]

function variables (prefix: string): tf.Variable[] {
  return SHAPES.map((shape, i) => tf.variable(tf.tensor(floats(100 + i, shape.reduce((a, b) => a * b, 1), 0.5), shape), true, `${prefix}${i}`))
}

function bits (t: tf.Tensor): Uint32Array {
  return new Uint32Array((t.dataSync() as Float32Array).slice().buffer)
}

async function sameAsTfjs (backend: 'wasm' | 'cpu'): Promise<void> {
  await loadBackend(backend)
  assert.equal(tf.getBackend(), backend)
  const ours = variables(`ours-${backend}-`)
  const theirs = variables(`theirs-${backend}-`)
  const a = tf.train.adam(0.003)
  const b = tf.train.adam(0.003)
  for (let step = 0; step < 25; step++) {
    // gradients of every size, some large, some tiny, some zero
    const grads = SHAPES.map((shape, i) => {
      const values = floats(step * 31 + i, shape.reduce((x, y) => x * y, 1), step % 3 === 0 ? 10 : 1e-3)
      values[0] = 0
      return tf.tensor(values, shape)
    })
    adamStep(a, ours, grads)
    b.applyGradients(theirs.map((v, i) => ({ name: v.name, tensor: grads[i] })))
    for (let i = 0; i < SHAPES.length; i++) assert.deepEqual(bits(ours[i]), bits(theirs[i]), `${backend}, step ${step}, variable ${i}: weights`)
    grads.forEach(g => { g.dispose() })
  }
  const wa = await a.getWeights()
  const wb = await b.getWeights()
  assert.deepEqual(wa.map(w => w.name.replace('ours', '')), wb.map(w => w.name.replace('theirs', '')), 'the same optimizer state, by name')
  for (let i = 0; i < wa.length; i++) assert.deepEqual(bits(wa[i].tensor), bits(wb[i].tensor), `${backend}: optimizer state ${wa[i].name}`)
  // restored into a fresh optimizer (as a checkpoint or the swarm's state is): both go on identically
  const c = tf.train.adam(0.003)
  await c.setWeights(wa.map(w => ({ name: w.name, tensor: w.tensor.clone() })))
  const d = tf.train.adam(0.003)
  await d.setWeights(wb.map(w => ({ name: w.name, tensor: w.tensor.clone() })))
  const grads = SHAPES.map((shape, i) => tf.tensor(floats(999 + i, shape.reduce((x, y) => x * y, 1), 1), shape))
  adamStep(c, ours, grads)
  d.applyGradients(theirs.map((v, i) => ({ name: v.name, tensor: grads[i] })))
  for (let i = 0; i < SHAPES.length; i++) assert.deepEqual(bits(ours[i]), bits(theirs[i]), `${backend}, after a restore, variable ${i}`)
  for (const t of [...ours, ...theirs, ...grads]) t.dispose()
  for (const o of [a, b, c, d]) o.dispose()
}

test('adamStep is tf.js\'s Adam bit for bit on the wasm backend', async () => { await sameAsTfjs('wasm') })
test('adamStep is tf.js\'s Adam bit for bit on the cpu backend', async () => { await sameAsTfjs('cpu') })

test('only Adam takes adamStep: SGD and momentum keep tf.js\'s own step', async () => {
  await loadBackend('wasm')
  assert.equal(usesAdamStep(tf.train.adam(0.01)), true)
  assert.equal(usesAdamStep(tf.train.sgd(0.01)), false)
  assert.equal(usesAdamStep(tf.train.momentum(0.01, 0.9)), false)
})
