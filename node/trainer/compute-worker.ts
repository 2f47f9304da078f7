/**
 * The worker thread of compute.ts: builds the trainer's net, then, per batch, sets its variables from the
 * shared weights buffer, computes loss and gradients, and writes the gradients into the shared gradients
 * buffer. Protocol: ComputeRequest in, ComputeReply out.
 */
import { parentPort } from 'node:worker_threads'
import * as tf from '@tensorflow/tfjs'
import { selectBackend } from './backend.ts'
import { floatValues } from './kernels.ts'
import { createLayersNet } from './layers-net.ts'
import type { Net } from './model.ts'
import { createPresetNet, evaluateNet, testRows } from './trainer.ts'
import type { Examples } from '../data/types.ts'
import type { ComputeReply, ComputeRequest } from './compute.ts'

const port = parentPort
if (port === null) throw new Error('compute-worker.ts runs as a worker thread (compute.ts)')

let net: Net | null = null
let weights: Float32Array | null = null
let grads: Float32Array | null = null
let offsets: number[] = []
let batch = new Float32Array(new SharedArrayBuffer(0))
let test: Examples | null = null

function reply (m: ComputeReply): void {
  port?.postMessage(m)
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function init (m: Extract<ComputeRequest, { type: 'init' }>): Promise<void> {
  await selectBackend('wasm')
  const { job, shape, model } = m.init
  net = model !== null
    ? await createLayersNet(model, { features: shape.features, classes: shape.classes, seed: job.seed })
    : createPresetNet(job, shape)
  const sizes = net.variables.map(v => v.size)
  if (sizes.join() !== m.sizes.join()) throw new Error(`the worker's net has variables of ${sizes.join(',')} elements, the trainer's ${m.sizes.join(',')}`)
  weights = new Float32Array(m.weights)
  grads = new Float32Array(m.grads)
  offsets = m.offsets
}

/** Sets the net's variables from the shared weights buffer; the net. */
function withWeights (): Net {
  if (net === null || weights === null) throw new Error('compute worker: no net yet')
  const w = weights
  tf.tidy(() => {
    (net as Net).variables.forEach((v, i) => { v.assign(tf.tensor(w.subarray(offsets[i], offsets[i] + v.size), v.shape, 'float32')) })
  })
  return net
}

async function step (m: Extract<ComputeRequest, { type: 'step' }>): Promise<number> {
  if (grads === null) throw new Error('compute worker: no net yet')
  const current = withWeights()
  if (m.batch !== undefined) batch = new Float32Array(m.batch)
  const x = batch.subarray(0, m.xLength)
  const y = batch.subarray(m.xLength, m.xLength + m.yLength)
  const { loss, grads: gs } = tf.tidy(() => current.lossAndGrads(tf.tensor2d(x, [m.n, m.xLength / m.n]), tf.tensor2d(y, [m.n, m.yLength / m.n]), m.step))
  try {
    gs.forEach((g, i) => { (grads as Float32Array).set(floatValues(g), offsets[i]) })
    return (await loss.data())[0]
  } finally {
    loss.dispose()
    for (const g of gs) g.dispose()
  }
}

port.on('message', (m: ComputeRequest) => {
  if (m.type === 'init') {
    init(m).then(() => { reply({ type: 'ready' }) }, err => { reply({ type: 'error', id: null, message: `the worker could not build the net: ${describe(err)}` }) })
    return
  }
  if (m.type === 'evaluate') {
    try {
      if (m.test !== undefined) test = m.test
      if (test === null) throw new Error('compute worker: no test set')
      reply({ type: 'evaluated', id: m.id, ...evaluateNet(withWeights(), testRows(test, m.from, m.to), m.classes) })
    } catch (err) {
      reply({ type: 'error', id: m.id, message: describe(err) })
    }
    return
  }
  step(m).then(loss => { reply({ type: 'done', id: m.id, loss }) }, err => { reply({ type: 'error', id: m.id, message: describe(err) }) })
})
