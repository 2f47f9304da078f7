/**
 * The local trainer's working parts, without the protocol: the model, the
 * optimizer, the data position, evaluation, and checkpoint capture/restore.
 * The trainer machine (machine.ts) decides when each of these runs.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep, setImmediate as yieldToEventLoop } from 'node:timers/promises'
import * as tf from '@tensorflow/tfjs'
import type { Job } from '../../protocols/job/index.ts'
import { divideFloats, scaleFloats, simdFloats } from '../common/simd-floats.ts'
import type { BatchReader, Dataset } from '../data/dataset.ts'
import type { Examples } from '../data/types.ts'
import { DataEpoch } from '../data/epoch.ts'
import { RowSet } from '../data/stream/index.ts'
import { createGptNet, gptOptionsOf } from './gpt.ts'
import { floatValues } from './kernels.ts'
import { createNet } from './model.ts'
import type { ModelPreset, Net } from './model.ts'
import type { Checkpoint } from './checkpoint.ts'
import type { Evaluation, Progress } from './progress.ts'
import { CheckpointMismatchError } from './errors.ts'
import { adamStep, usesAdamStep } from './adam.ts'
import type { ComputeWorker } from './compute.ts'

export type { Evaluation, Progress } from './progress.ts'

/**
 * One local update, ready to be applied (or, in a swarm, reduced first). Its tensors are the Trainer's: the
 * Trainer owns tensor ↔ vector and every disposal on the step path (`flattenUpdate` and `applyUpdate` dispose
 * the update they are given; callers only move the update and the vectors between them).
 */
export interface Update {
  grads: tf.Tensor[]
  loss: number
  samples: number
  /** After a reduction: the round's summed data-position slots (node/data/epoch.ts); absent: this member's own. */
  data?: Float32Array
}

/** The swarm's data position, as status shows it. */
export interface DataStatus {
  /** The data epoch the swarm is in, and its rows trained and left (agreed in every round). */
  epoch: number
  rowsDone: number
  rowsLeft: number
  /** This peer's shards it reads now (it was their only claimant in the last round). */
  reading: number
  /** Shards more than one member claimed in the last round (read by none until the claims settle). */
  contested: number
  /** Rows agreed taken beyond a block's end: 0 unless a row was read twice. */
  overTaken: number
}

/** Where a step's time goes, smoothed over recent steps (milliseconds). */
export class StepTiming {
  computeMs = 0
  reduceMs = 0
  applyMs = 0
  record (phase: 'compute' | 'reduce' | 'apply', ms: number): void {
    const key = `${phase}Ms` as 'computeMs' | 'reduceMs' | 'applyMs'
    this[key] = this[key] === 0 ? ms : 0.9 * this[key] + 0.1 * ms
  }
}

export interface TrainerInit {
  job: Job
  jobId: string
  dataset: Dataset
  /** The job's net when it is not a preset (a user's Layers model: layers-net.ts, built before the trainer). */
  net?: Net
  /** Each shard's training rows, in index order (the job's shards: node/data/shards.ts); default the data set's own (an imported one's files), or one shard of all rows. */
  shardRows?: readonly number[]
  /**
   * True: this trainer is a member of a swarm, whose members read the same data set: a shard is read only after a
   * round has found this member its only claimant (node/data/epoch.ts). Default false: it reads its rows alone.
   */
  swarm?: boolean
  /** Where the gradients are computed (useComputeWorker); default this thread. */
  compute?: ComputeWorker
}

/** What a net's shape depends on in a data set. */
export type DatasetShape = Pick<Dataset, 'inputShape' | 'features' | 'classes'>

/** The net of a job whose model is a preset (mlp, cnn, gpt), for a data set of this shape. */
export function createPresetNet (job: Job, shape: DatasetShape): Net {
  const config = {
    preset: job.model as ModelPreset,
    hidden: job.hidden,
    inputShape: job.model === 'cnn' ? shape.inputShape : [shape.features],
    classes: shape.classes,
    seed: job.seed
  }
  return job.model === 'gpt' ? createGptNet(config, gptOptionsOf(job.gpt, shape.features)) : createNet(config)
}

/** The rows [from, to) of a set of examples, as views (no copy). */
export function testRows (examples: Examples, from: number, to: number): Examples {
  if (from === 0 && to === examples.n) return examples
  if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to <= examples.n)) throw new RangeError(`rows ${from} … ${to} of ${examples.n}`)
  return { x: examples.x.subarray(from * examples.features, to * examples.features), y: examples.y.subarray(from, to), n: to - from, features: examples.features }
}

/** Mean test loss and accuracy of a net over these examples (Trainer.evaluate, and the compute worker's). */
export function evaluateNet (net: Net, test: Examples, classes: number): { loss: number, accuracy: number } {
  if (net.evaluateRows !== undefined) return net.evaluateRows(test.x, test.n)
  const y = new Float32Array(test.n * classes)
  for (let i = 0; i < test.n; i++) y[i * classes + test.y[i]] = 1
  const [loss, accuracy] = tf.tidy(() => {
    const xs = tf.tensor2d(test.x, [test.n, test.features])
    const ys = tf.tensor2d(y, [test.n, classes])
    const logits = net.predict(xs)
    const l = tf.losses.softmaxCrossEntropy(ys, logits).dataSync()[0]
    const correct = tf.equal(tf.argMax(logits, 1), tf.argMax(ys, 1)).sum().dataSync()[0]
    return [l, correct / test.n]
  })
  return { loss, accuracy }
}

/** Names of the outer optimizer's state (H > 1) inside a checkpoint's optimizer group. */
const OUTER_ANCHOR = 'outer/anchor'
const OUTER_MOMENTUM = 'outer/momentum'
/** The swarm's data position in a checkpoint's optimizer group: [epoch, members, rows taken per block…, claimants per shard…]. */
const DATA_POSITION = 'data/position'

/** Loss and throughput figures, smoothed over recent steps. */
const LOSS_SMOOTHING = 0.9
const RATE_WINDOW_MS = 3000
/** Rounds between the weights hashes kept for status, and how many are kept. */
const HASH_EVERY = 16
const HASHES_KEPT = 16
/**
 * Slots after the data position's in an H = 1 update vector: a sharded evaluation's part (loss summed over its
 * rows, rows classified right, rows), zeros from a member that has none to send (see evaluatePart).
 */
const EVALUATION_SLOTS = 3
/** How long a peer without rows waits before looking again, when nobody trained in the last round either. */
const IDLE_WAIT_MS = 200

/**
 * tfjs's Adam keeps β₁ᵗ and β₂ᵗ as running float32 products, but its `setWeights` recomputes them with `pow`,
 * which differs in the last bits: a member restored from a checkpoint or the swarm's state would then apply
 * the same sums to slightly different weights than the others, and drift apart round after round. Recompute
 * them as the running product does (float32 multiplications are exact to repeat: `Math.fround(a · b)`).
 */
function exactAdamPowers (optimizer: tf.Optimizer): void {
  const adam = optimizer as unknown as { beta1?: number, beta2?: number, accBeta1?: tf.Variable, accBeta2?: tf.Variable, iterations_?: number }
  if (!(optimizer instanceof tf.AdamOptimizer) || adam.accBeta1 == null || adam.accBeta2 == null) return
  const steps = adam.iterations_ ?? 0
  const power = (beta: number): number => {
    const b = Math.fround(beta)
    let acc = b
    for (let i = 0; i < steps; i++) acc = Math.fround(acc * b)
    return acc
  }
  adam.accBeta1.assign(tf.scalar(power(adam.beta1 ?? 0.9)))
  adam.accBeta2.assign(tf.scalar(power(adam.beta2 ?? 0.999)))
}

/**
 * The learning rate of a step over `samples` (the whole round's, H = 1): the job's, scaled as its `lrScaling`
 * says by k = samples / batchSize (batches' worth of samples: the number of peers that trained full batches),
 * never below the job's (a short last batch keeps it).
 */
export function learningRateFor (job: Job, samples: number): number {
  const k = samples / job.batchSize
  if (job.lrScaling === undefined || job.syncEvery !== 1 || !(k > 1)) return job.learningRate
  return job.learningRate * (job.lrScaling === 'linear' ? k : Math.sqrt(k))
}

/**
 * Sets a tf.js optimizer's learning rate: SGD and momentum keep it as a scalar tensor too (`setLearningRate`), Adam
 * reads the field each step. (Not `instanceof tf.SGDOptimizer`: tf.js optimizers answer instanceof by duck typing,
 * so an Adam optimizer is one.)
 */
function setLearningRate (optimizer: tf.Optimizer, rate: number): void {
  const o = optimizer as unknown as { learningRate: number, setLearningRate?: (rate: number) => void }
  if (typeof o.setLearningRate === 'function') o.setLearningRate(rate)
  else o.learningRate = rate
}

export function createOptimizer (job: Job): tf.Optimizer {
  switch (job.optimizer) {
    case 'sgd': return tf.train.sgd(job.learningRate)
    case 'momentum': return tf.train.momentum(job.learningRate, 0.9)
    case 'adam': return tf.train.adam(job.learningRate)
  }
}

export class Trainer {
  readonly job: Job
  readonly jobId: string
  readonly dataset: Dataset
  readonly net: Net
  readonly optimizer: tf.Optimizer
  progress: Progress = { step: 0, round: 0, samples: 0 }
  /** Smoothed training loss (null before the first step). */
  loss: number | null = null
  lastEvaluation: Evaluation | null = null
  readonly timing = new StepTiming()
  /** The worker that computes the gradients (useComputeWorker), or null: this thread. */
  private compute: ComputeWorker | null
  /** Which rows of the current epoch the swarm has trained, agreed in every round (node/data/epoch.ts). */
  readonly data: DataEpoch
  /** The training rows this peer trains on (its shards' rows; all rows when alone), and those shards. */
  private rows: RowSet
  private mine: number[]
  /** Reads the batches' rows (from memory, or from the shard files with read-ahead). */
  private readonly batches: BatchReader
  /** Rounds in a row in which the swarm trained nothing (see IDLE_WAIT_MS). */
  private idleRounds = 0
  /** The training rows of the last batch computed (which rows, for tests and figures). */
  lastBatchRows: Uint32Array = new Uint32Array(0)
  /** H > 1: the agreed weights at the last averaging, and the outer optimizer's momentum. */
  private anchor: Float32Array | null = null
  private outerMomentum: Float32Array | null = null
  /** The epoch the last applied update ended in (for `atEpochBoundary`). */
  private epochEnded = false
  private readonly rate: Array<{ t: number, n: number }> = []
  /** The learning rate of the last step (the job's, or scaled by `lrScaling`). */
  learningRate: number
  private hashCache: { step: number, hash: string } | null = null
  /** The update vector flattenUpdate fills and the gradients unflattenUpdate makes, reused (see there). */
  private flatBuffer: Float32Array | null = null
  private gradBuffer: Float32Array | null = null
  /** Weights hashes of recent rounds (see noteHash). */
  readonly hashes: Array<{ round: number, hash: string }> = []
  /** A sharded evaluation's part (evaluatePart): waiting for the next update vector, then in its round. */
  private evaluationPart: { epoch: number, step: number, lossSum: number, correct: number, rows: number } | null = null
  private evaluationSent: { epoch: number, step: number } | null = null

  constructor (init: TrainerInit) {
    this.job = init.job
    this.jobId = init.jobId
    this.dataset = init.dataset
    this.net = init.net ?? createPresetNet(init.job, init.dataset)
    this.compute = init.compute ?? null
    this.optimizer = createOptimizer(init.job)
    this.learningRate = init.job.learningRate
    const train = init.dataset.train
    const shardRows = init.shardRows ?? train.shardRows ?? [train.n]
    if (train.shardRows !== undefined && shardRows.join() !== train.shardRows.join()) throw new RangeError('the shards given are not the data set\'s own')
    this.data = new DataEpoch({ shardRows, blockRows: train.blockRows, seed: init.job.seed, windowBlocks: train.windowBlocks, shared: init.swarm ?? false })
    if (this.data.rows !== train.n) throw new RangeError(`the shards hold ${this.data.rows} rows, the data set ${train.n}`)
    this.rows = RowSet.all(train.n)
    this.mine = this.data.shardsIn(this.rows)
    this.batches = train.batches(init.dataset.classes)
  }

  /**
   * Computes the gradients in this worker thread from now on (compute.ts: a copy of the net, bit for bit the
   * same gradients), which keeps this thread's event loop (the network, the control API) free while a batch
   * trains. The trainer closes it on dispose.
   */
  useComputeWorker (worker: ComputeWorker): void {
    if (this.compute !== null && this.compute !== worker) this.compute.close()
    this.compute = worker
  }

  /** Stops the compute worker, if any: this thread computes from then on. */
  stopComputeWorker (): void {
    this.compute?.close()
    this.compute = null
  }

  /** True when a worker thread computes the gradients (useComputeWorker). */
  get computesInWorker (): boolean {
    return this.compute !== null
  }

  /** Completed passes over the whole training set (swarm-wide samples / rows). */
  get epoch (): number {
    return Math.floor(this.progress.samples / this.dataset.train.n)
  }

  /**
   * Trains on these rows from now on (the rows of the shards this peer owns and holds): the shards wholly
   * inside them, once a round has found this peer their only claimant (node/data/epoch.ts).
   */
  setRows (rows: RowSet): void {
    if (rows.equals(this.rows)) return
    this.rows = rows
    this.mine = this.data.shardsIn(rows)
  }

  get rowCount (): number {
    return this.rows.size
  }

  /** The swarm's data position as status shows it (node/data/epoch.ts). */
  get dataStatus (): DataStatus {
    const { shards, contested } = this.data.reading(this.mine)
    return { epoch: this.data.epoch, rowsDone: this.data.done, rowsLeft: this.data.left, reading: shards, contested, overTaken: this.data.overTaken }
  }

  get stepsPerEpoch (): number {
    return Math.ceil(this.dataset.train.n / this.job.batchSize)
  }

  get finished (): boolean {
    return this.progress.samples >= this.job.epochs * this.dataset.train.n
  }

  /** Fraction of the current epoch done. */
  get epochProgress (): number {
    return (this.progress.samples % this.dataset.train.n) / this.dataset.train.n
  }

  /** Samples per second over the last few seconds. */
  get samplesPerSec (): number {
    const now = performance.now()
    while (this.rate.length > 1 && now - this.rate[0].t > RATE_WINDOW_MS) this.rate.shift()
    if (this.rate.length < 2) return 0
    const first = this.rate[0]
    const last = this.rate[this.rate.length - 1]
    let n = 0
    for (let i = 1; i < this.rate.length; i++) n += this.rate[i].n
    const dt = (last.t - first.t) / 1000
    return dt > 0 ? n / dt : 0
  }

  /** Computes the gradient of the next batch; does not move the data position. */
  async computeUpdate (): Promise<Update> {
    // tfjs kernels run synchronously here; give I/O (the control API, the network) a turn every step.
    await yieldToEventLoop()
    const rows = this.data.next(this.mine, this.job.batchSize)
    if (rows.length === 0) {
      // nothing to read (a joiner before its first claims land, a shard's claims settling): the round paces this
      // peer, unless nobody trained in the last one either: then wait a little rather than spin
      if (this.idleRounds > 1) await sleep(IDLE_WAIT_MS)
      return { grads: [], loss: 0, samples: 0 }
    }
    const batch = await this.batches.read(rows)
    // after the read (whose blocks it holds): the blocks of the next batches, loaded while this one trains
    this.batches.prefetch(this.data.upcoming(this.mine))
    this.lastBatchRows = batch.rows
    if (this.compute !== null) {
      // the worker's net gets these weights, computes, and leaves its gradients in its shared buffer; the
      // tensors made of them are copies (consumed before the next batch is sent in any case)
      const vars = this.net.variables
      const out = await this.compute.gradients(vars.map(v => floatValues(v)), batch, this.progress.step)
      return { grads: vars.map((v, i) => tf.tensor(out.grads[i], v.shape, 'float32')), loss: out.loss, samples: batch.n }
    }
    const { loss, grads } = tf.tidy(() => {
      const x = tf.tensor2d(batch.x, [batch.n, this.dataset.features])
      const y = tf.tensor2d(batch.y, [batch.n, this.dataset.classes])
      return this.net.lossAndGrads(x, y, this.progress.step)
    })
    const lossValue = (await loss.data())[0]
    loss.dispose()
    return { grads, loss: lossValue, samples: batch.n }
  }

  /**
   * Applies an update with the optimizer; `update.samples` counts every sample the update was computed over (the
   * whole swarm's, after a reduction), `localSamples` this peer's own batch. With H = 1 the round's data
   * position is applied too (with H > 1, at the averaging: applyOuter).
   */
  applyUpdate (update: Update, localSamples = update.samples): void {
    if (this.job.syncEvery === 1) this.data.apply(update.data ?? this.ownSlots())
    if (update.samples === 0) {
      // H = 1: a round in which nobody trained (claims settling) counts as a round, not as a step; H > 1: with
      // nothing to read, this member's local period ends now (its claims reach the swarm at the averaging)
      for (const g of update.grads) g.dispose()
      this.epochEnded = false
      if (this.job.syncEvery === 1) this.progress.round += 1
      else this.progress.sinceSyncSteps = this.job.syncEvery
      this.idleRounds += 1
      return
    }
    this.idleRounds = 0
    const trainable: tf.Variable[] = []
    const grads: tf.Tensor[] = []
    // a non-trainable variable's "gradient" is its new value, averaged over the swarm (see Net.lossAndGrads)
    this.net.variables.forEach((v, i) => {
      if (v.trainable) {
        trainable.push(v)
        grads.push(update.grads[i])
      } else {
        // a copy: the update's tensors may view unflattenUpdate's reused buffer
        tf.tidy(() => { v.assign(tf.tensor((update.grads[i].dataSync() as Float32Array).slice(), v.shape)) })
      }
    })
    const rate = learningRateFor(this.job, update.samples)
    if (rate !== this.learningRate) {
      setLearningRate(this.optimizer, rate)
      this.learningRate = rate
    }
    // Adam in one loop per variable, bit for bit tf.js's (node/trainer/adam.ts); other optimizers as tf.js has them
    if (usesAdamStep(this.optimizer) && trainable.every(v => v.dtype === 'float32')) adamStep(this.optimizer, trainable, grads)
    else this.optimizer.applyGradients(Object.fromEntries(trainable.map((v, i) => [v.name, grads[i]])))
    this.net.afterUpdate?.() // weight constraints
    for (const g of update.grads) g.dispose()
    this.loss = this.loss === null ? update.loss : LOSS_SMOOTHING * this.loss + (1 - LOSS_SMOOTHING) * update.loss
    this.rate.push({ t: performance.now(), n: update.samples })
    const p = this.progress
    const epochBefore = this.epoch
    p.step += 1
    if (this.job.syncEvery === 1) {
      p.round += 1
      p.samples += update.samples
    } else {
      // a local step: the swarm's samples are counted when the deltas are averaged
      p.sinceSyncSteps = (p.sinceSyncSteps ?? 0) + 1
      p.sinceSyncSamples = (p.sinceSyncSamples ?? 0) + localSamples
    }
    this.epochEnded = this.epoch > epochBefore
    if (this.job.syncEvery === 1) this.noteHash()
  }

  /**
   * Every HASH_EVERY rounds, the weights hash after that round: members of one swarm hold the same hash for the
   * same round, which status shows (and tests compare) without catching every member at one instant.
   */
  private noteHash (): void {
    if (this.progress.round % HASH_EVERY !== 0) return
    this.hashes.push({ round: this.progress.round, hash: this.weightsHash() })
    if (this.hashes.length > HASHES_KEPT) this.hashes.shift()
  }

  /** H > 1: the local period is over; the deltas are due for averaging. */
  get syncDue (): boolean {
    return this.job.syncEvery > 1 && (this.progress.sinceSyncSteps ?? 0) >= this.job.syncEvery
  }

  /** H > 1: the weights every member agreed on at the last averaging (taken lazily from the model). */
  private anchorWeights (): Float32Array {
    this.anchor ??= this.flatWeights()
    return this.anchor
  }

  /**
   * H > 1: the parameter delta of this local period as one all-reduce vector:
   * (anchor − weights) × local samples, the local sample count, then the
   * data position's slots (the rows of the period's batches: DataEpoch.encode).
   */
  deltaVector (): Float32Array {
    const anchor = this.anchorWeights()
    const w = this.flatWeights()
    const n = this.progress.sinceSyncSamples ?? 0
    const out = new Float32Array(w.length + 1 + this.data.slots)
    for (let i = 0; i < w.length; i++) out[i] = (anchor[i] - w[i]) * n
    out[w.length] = n
    this.data.encode(out.subarray(w.length + 1), this.mine)
    return out
  }

  /** This member's own data-position slots (an update applied without a round: alone, no swarm to sum with). */
  private ownSlots (): Float32Array {
    const own = new Float32Array(this.data.slots)
    this.data.encode(own, this.mine)
    return own
  }

  /** The round this peer drew its rows for went ahead without it: they are not taken (they are read again). */
  roundMissed (): void {
    this.data.discard()
  }

  /**
   * H > 1: applies the averaged delta with the outer optimizer (SGD with
   * Nesterov momentum, as DiLoCo), moves the anchor, and sets every member's
   * weights to it.
   */
  applyOuter (sum: Float32Array): void {
    const anchor = this.anchorWeights()
    const n = anchor.length
    const total = sum[n]
    const lr = this.job.outerLearningRate
    const mu = this.job.outerMomentum
    this.outerMomentum ??= new Float32Array(n)
    const m = this.outerMomentum
    if (total > 0) {
      for (let i = 0; i < n; i++) {
        const g = sum[i] / total
        m[i] = mu * m[i] + g
        anchor[i] -= lr * (g + mu * m[i])
      }
    }
    this.setFlatWeights(anchor)
    if (this.net.afterUpdate !== undefined) {
      this.net.afterUpdate() // weight constraints: the anchor is then the constrained weights, taken again from the model
      this.anchor = null
    }
    this.data.apply(sum.subarray(n + 1, n + 1 + this.data.slots))
    this.idleRounds = total > 0 ? 0 : this.idleRounds + 1
    const p = this.progress
    const epochBefore = this.epoch
    p.round += 1
    p.samples += Math.round(total)
    p.sinceSyncSteps = 0
    p.sinceSyncSamples = 0
    this.hashCache = null
    this.epochEnded = this.epoch > epochBefore
    this.noteHash()
  }

  /** Writes a flat vector (variable order) into the model. */
  setFlatWeights (values: Float32Array): void {
    tf.tidy(() => {
      let offset = 0
      for (const v of this.net.variables) {
        v.assign(tf.tensor(values.subarray(offset, offset + v.size), v.shape))
        offset += v.size
      }
    })
  }

  /** True right after the update that completed an epoch was applied. */
  get atEpochBoundary (): boolean {
    return this.epochEnded
  }

  /**
   * Loss and accuracy on the held-out test rows (a language model: mean
   * cross-entropy per token in nats, and next-token accuracy).
   */
  async evaluate (): Promise<Evaluation> {
    const { loss, accuracy } = await this.evaluateTestRows(0, this.dataset.test.n)
    this.lastEvaluation = { epoch: this.epoch, step: this.progress.step, loss, accuracy }
    return this.lastEvaluation
  }

  /** Mean loss and accuracy over the test rows [from, to), in the compute worker where there is one. */
  private async evaluateTestRows (from: number, to: number): Promise<{ loss: number, accuracy: number }> {
    await yieldToEventLoop()
    const { test, classes } = this.dataset
    return this.compute !== null
      ? await this.compute.evaluate(this.net.variables.map(v => floatValues(v)), test, classes, from, to)
      : evaluateNet(this.net, testRows(test, from, to), classes)
  }

  /**
   * True when an evaluation can be split between the members of a swarm: H = 1 (each part travels in the next
   * update vector) and a classifier's (a language model's evaluateRows weighs its rows by their tokens).
   */
  get shardsEvaluation (): boolean {
    return this.job.syncEvery === 1 && this.net.evaluateRows === undefined
  }

  /**
   * This member's part of a sharded evaluation, as DDP users evaluate with a DistributedSampler: of `count`
   * members, the one at `index` evaluates test rows [⌊index·n/count⌋, ⌊(index+1)·n/count⌋). The part goes
   * into the next update vector (flattenUpdate); the round sums every member's, and settleEvaluation turns the
   * sum into the swarm's evaluation of the whole test set: the same figures on every member, for 1/count of the
   * work each.
   */
  async evaluatePart (index: number, count: number): Promise<void> {
    if (!(Number.isInteger(index) && Number.isInteger(count) && index >= 0 && index < count)) throw new RangeError(`evaluation part ${index} of ${count}`)
    const n = this.dataset.test.n
    const from = Math.floor(index * n / count)
    const to = Math.floor((index + 1) * n / count)
    const rows = to - from
    const { loss, accuracy } = rows === 0 ? { loss: 0, accuracy: 0 } : await this.evaluateTestRows(from, to)
    this.evaluationPart = { epoch: this.epoch, step: this.progress.step, lossSum: loss * rows, correct: Math.round(accuracy * rows), rows }
  }

  /**
   * After the round that carried this member's evaluation part (`sum`: its summed vector, or null when the
   * round went ahead without this member): the swarm's evaluation when every test row was summed; otherwise
   * (a member left, the round was missed) this member evaluates every row itself. The weights are still those
   * of the evaluation then: an update is applied after this. Null when no part was in the round.
   */
  async settleEvaluation (sum: Float32Array | null): Promise<Evaluation | null> {
    const sent = this.evaluationSent
    if (sent === null) return null
    this.evaluationSent = null
    const at = this.evaluationAt
    const n = this.dataset.test.n
    if (sum === null || sum.length !== at + EVALUATION_SLOTS || sum[at + 2] !== n) return await this.evaluate()
    this.lastEvaluation = { epoch: sent.epoch, step: sent.step, loss: sum[at] / n, accuracy: sum[at + 1] / n }
    return this.lastEvaluation
  }

  /** Where a sharded evaluation's part starts in an H = 1 update vector (after the count and the data position). */
  private get evaluationAt (): number {
    return this.parameterCount + 1 + this.data.slots
  }

  /** Parameters of the model. */
  get parameterCount (): number {
    return this.net.variables.reduce((s, v) => s + v.size, 0)
  }

  /**
   * An update as one vector for the all-reduce: every gradient times the
   * sample count, then the sample count itself, so that the sum over members
   * divided by it is the sample-weighted average, then the data position's
   * slots (DataEpoch.encode: the rows of this batch, the shards claimed), then
   * a sharded evaluation's part (EVALUATION_SLOTS, zeros without one). The
   * update's tensors are disposed (the vector replaces them).
   */
  flattenUpdate (update: Update): Float32Array {
    // one buffer, reused step after step: a vector-sized array per step is external memory that drives V8's
    // full collections (a 1 MB model: one every few hundred ms, each a pause of 10-20 ms the ring waits out)
    // (in a wasm memory of its own, where the scaling runs in SIMD: 0.45-0.7 ms → 0.15-0.17 ms for 235,146
    // parameters, the same bits)
    const params = this.parameterCount
    const at = this.evaluationAt
    if (this.flatBuffer?.length !== at + EVALUATION_SLOTS) this.flatBuffer = simdFloats(at + EVALUATION_SLOTS)
    const out = this.flatBuffer
    const samples = update.samples
    let offset = 0
    for (const g of update.grads) {
      const values = floatValues(g)
      out.set(values, offset)
      offset += values.length
    }
    scaleFloats(out, 0, offset, samples)
    // (no gradients: a peer without rows sends zeros)
    if (offset < params) out.fill(0, offset, params)
    out[params] = samples
    this.data.encode(out.subarray(params + 1, at), this.mine)
    // (a part whose loss is not finite stays out: the ring refuses NaN and Inf, and names the sender; the sum then
    // lacks its rows and every member evaluates all of them itself)
    const part = this.evaluationPart
    const sent = part !== null && Number.isFinite(part.lossSum) ? part : null
    out[at] = sent?.lossSum ?? 0
    out[at + 1] = sent?.correct ?? 0
    out[at + 2] = sent?.rows ?? 0
    if (part !== null) {
      this.evaluationPart = null
      this.evaluationSent = { epoch: part.epoch, step: part.step }
    }
    for (const g of update.grads) g.dispose()
    return out
  }

  /**
   * The averaged update from a summed vector (see flattenUpdate); `loss` is this peer's. With `inPlace` the
   * averages are written over `sum` itself (a caller that owns it: one model-sized buffer fewer).
   */
  unflattenUpdate (sum: Float32Array, loss: number, inPlace = false): Update {
    const params = this.parameterCount
    const at = this.evaluationAt
    if (sum.length !== at + EVALUATION_SLOTS) throw new RangeError(`a summed update of ${sum.length} numbers, this trainer's take ${at + EVALUATION_SLOTS}`)
    const total = sum[params]
    const grads: tf.Tensor[] = []
    // into one reused buffer (see flattenUpdate); the tensors may view it (the cpu backend does not copy), so
    // they are to be applied before the next call
    if (!inPlace && this.gradBuffer?.length !== params) this.gradBuffer = simdFloats(params)
    const buffer = inPlace ? sum : this.gradBuffer as Float32Array
    if (total > 0) {
      if (!inPlace) buffer.set(sum.subarray(0, params))
      // in SIMD where the sum is the rounds' sum buffer (or this trainer's gradBuffer)
      divideFloats(buffer, 0, params, total)
    } else {
      buffer.fill(0, 0, params)
    }
    let offset = 0
    for (const v of this.net.variables) {
      grads.push(tf.tensor(buffer.subarray(offset, offset + v.size), v.shape))
      offset += v.size
    }
    return { grads, loss, samples: Math.round(total), data: sum.slice(params + 1, at) }
  }

  /**
   * The state a joining peer needs, encoded the same way on every member at
   * the same round (no timestamps, no local data position), so that several
   * donors serve identical bytes.
   */
  async swarmSnapshot (): Promise<Checkpoint> {
    for (;;) {
      const { step, round } = this.progress
      const ckpt = await this.capture()
      // an update (or a round in which nobody trained, which moves the data position) landed while capturing: again
      if (this.progress.step !== step || this.progress.round !== round) continue
      if (this.job.syncEvery > 1) {
        // a joiner starts from the agreed weights of the last averaging, not from this member's local period
        const anchor = this.anchorWeights()
        let offset = 0
        ckpt.weights = ckpt.weights.map(w => {
          const values = anchor.slice(offset, offset + w.values.length)
          offset += w.values.length
          return { ...w, values }
        })
      }
      return {
        ...ckpt,
        progress: { step: ckpt.progress.step, round: ckpt.progress.round, samples: ckpt.progress.samples, sinceSyncSteps: 0, sinceSyncSamples: 0, ...(ckpt.progress.group !== undefined ? { group: ckpt.progress.group } : {}) },
        loss: null,
        evaluation: null,
        createdAt: 0
      }
    }
  }

  /** Takes the swarm's state (its data position too: which rows the swarm has trained); keeps this peer's figures. */
  async adopt (snapshot: Checkpoint): Promise<void> {
    const loss = this.loss
    const evaluation = this.lastEvaluation
    await this.restore(snapshot)
    this.loss = loss
    this.lastEvaluation = evaluation
  }

  /** All weights as one flat vector, in variable order. */
  flatWeights (): Float32Array {
    const n = this.net.variables.reduce((s, v) => s + v.size, 0)
    const out = new Float32Array(n)
    let offset = 0
    for (const v of this.net.variables) {
      out.set(floatValues(v), offset)
      offset += v.size
    }
    return out
  }

  /**
   * sha256 (first 16 hex digits) of the weights the swarm agrees on: the model's
   * weights with H = 1, the anchor of the last averaging with H > 1 (between
   * averagings each member's local weights differ by design).
   */
  weightsHash (): string {
    if (this.hashCache?.step === this.progress.step) return this.hashCache.hash
    // variable by variable: the same hash as over flatWeights(), without a model-sized copy
    const sha = createHash('sha256')
    const add = (w: Float32Array): void => { sha.update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)) }
    if (this.job.syncEvery > 1) add(this.anchorWeights())
    else for (const v of this.net.variables) add(floatValues(v))
    const hash = sha.digest('hex').slice(0, 16)
    this.hashCache = { step: this.progress.step, hash }
    return hash
  }

  /** Captures everything needed to resume: weights, optimizer state, position. */
  async capture (): Promise<Checkpoint> {
    const optimizerState = await this.optimizer.getWeights()
    const optimizer = optimizerState.map(({ name, tensor }) => ({ name, shape: tensor.shape, values: tensor.dataSync() as Float32Array }))
    if (this.job.syncEvery > 1) {
      const anchor = this.anchorWeights()
      optimizer.push({ name: OUTER_ANCHOR, shape: [anchor.length], values: anchor.slice() })
      optimizer.push({ name: OUTER_MOMENTUM, shape: [anchor.length], values: (this.outerMomentum ?? new Float32Array(anchor.length)).slice() })
    }
    const position = this.data.state()
    optimizer.push({ name: DATA_POSITION, shape: [position.length], values: position })
    return {
      jobId: this.jobId,
      progress: { ...this.progress },
      loss: this.loss,
      evaluation: this.lastEvaluation,
      weights: this.net.variables.map(v => ({ name: v.name, shape: v.shape, values: v.dataSync() as Float32Array })),
      optimizer,
      createdAt: Date.now()
    }
  }

  /** Puts a captured state back; throws CheckpointMismatchError if it belongs to another job or model. */
  async restore (ckpt: Checkpoint): Promise<void> {
    if (ckpt.jobId !== this.jobId) throw new CheckpointMismatchError(`checkpoint is for job ${ckpt.jobId}, not ${this.jobId}`)
    const vars = this.net.variables
    if (ckpt.weights.length !== vars.length) throw new CheckpointMismatchError(`checkpoint has ${ckpt.weights.length} tensors, the model ${vars.length}`)
    vars.forEach((v, i) => {
      const w = ckpt.weights[i]
      if (w.shape.join('x') !== v.shape.join('x')) throw new CheckpointMismatchError(`checkpoint tensor ${i} has shape ${w.shape.join('x')}, the model ${v.shape.join('x')}`)
    })
    tf.tidy(() => {
      vars.forEach((v, i) => {
        const w = ckpt.weights[i]
        v.assign(tf.tensor(w.values, w.shape))
      })
    })
    const anchor = ckpt.optimizer.find(o => o.name === OUTER_ANCHOR)
    const momentum = ckpt.optimizer.find(o => o.name === OUTER_MOMENTUM)
    this.anchor = anchor !== undefined ? anchor.values.slice() : null
    this.outerMomentum = momentum !== undefined ? momentum.values.slice() : null
    const position = ckpt.optimizer.find(o => o.name === DATA_POSITION)
    const inner = ckpt.optimizer.filter(o => o !== anchor && o !== momentum && o !== position)
    if (inner.length > 0) {
      const tensors = inner.map(o => ({ name: o.name, tensor: tf.tensor(o.values, o.shape) }))
      await this.optimizer.setWeights(tensors)
      for (const t of tensors) t.tensor.dispose()
      exactAdamPowers(this.optimizer)
    }
    const p = ckpt.progress as Partial<Progress>
    this.progress = {
      step: p.step ?? 0,
      round: p.round ?? p.step ?? 0,
      samples: p.samples ?? 0,
      sinceSyncSteps: p.sinceSyncSteps ?? 0,
      sinceSyncSamples: p.sinceSyncSamples ?? 0,
      ...(p.group !== undefined ? { group: { epoch: p.group.epoch, members: [...p.group.members] } } : {})
    }
    this.restorePosition(position?.values ?? null)
    this.loss = ckpt.loss
    this.lastEvaluation = ckpt.evaluation
    this.evaluationPart = null
    this.evaluationSent = null
    this.hashCache = null
    this.hashes.length = 0
  }

  /** The data position a checkpoint stored (see DATA_POSITION); one written before positions were agreed starts its epoch again. */
  private restorePosition (values: Float32Array | null): void {
    if (values === null) {
      this.data.reset(this.epoch)
      return
    }
    try {
      this.data.restore(values)
    } catch (err) {
      throw new CheckpointMismatchError(`checkpoint's data position: ${(err as Error).message}`)
    }
  }


  dispose (): void {
    this.compute?.close()
    this.net.dispose()
    this.optimizer.dispose()
    void this.batches.close()
  }
}
