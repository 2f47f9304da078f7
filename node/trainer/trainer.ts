/**
 * The local trainer's working parts, without the protocol: the model, the
 * optimizer, the data position, evaluation, and checkpoint capture/restore.
 * The trainer machine (machine.ts) decides when each of these runs.
 */
import { createHash } from 'node:crypto'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import * as tf from '@tensorflow/tfjs'
import type { Job } from '../../protocols/job/index.ts'
import { epochOrder, gatherBatch } from '../data/dataset.ts'
import type { Dataset } from '../data/dataset.ts'
import { createNet } from './model.ts'
import type { Net } from './model.ts'
import type { Checkpoint } from './checkpoint.ts'
import { CheckpointMismatchError } from './errors.ts'

/** Where training stands; a checkpoint stores exactly this plus the tensors. */
export interface Progress {
  /** Optimizer steps applied since the job began. */
  step: number
  /** Passes over the training rows completed. */
  epoch: number
  /** Position within the current epoch's seeded order. */
  cursor: number
}

export interface Evaluation {
  epoch: number
  step: number
  loss: number
  accuracy: number
}

/** One local update, ready to be applied (or, in a swarm, reduced first). */
export interface Update {
  grads: tf.Tensor[]
  loss: number
  samples: number
}

export interface TrainerInit {
  job: Job
  jobId: string
  dataset: Dataset
}

/** Loss and throughput figures, smoothed over recent steps. */
const LOSS_SMOOTHING = 0.9
const RATE_WINDOW_MS = 3000

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
  progress: Progress = { step: 0, epoch: 0, cursor: 0 }
  /** Smoothed training loss (null before the first step). */
  loss: number | null = null
  lastEvaluation: Evaluation | null = null
  samplesSeen = 0
  private order: Uint32Array
  private orderEpoch: number
  private readonly rate: Array<{ t: number, n: number }> = []
  private hashCache: { step: number, hash: string } | null = null

  constructor (init: TrainerInit) {
    this.job = init.job
    this.jobId = init.jobId
    this.dataset = init.dataset
    this.net = createNet({
      preset: init.job.model,
      hidden: init.job.hidden,
      inputShape: init.job.model === 'cnn' ? init.dataset.inputShape : [init.dataset.features],
      classes: init.dataset.classes,
      seed: init.job.seed
    })
    this.optimizer = createOptimizer(init.job)
    this.orderEpoch = 0
    this.order = epochOrder(init.dataset.train.n, init.job.seed, 0)
  }

  get stepsPerEpoch (): number {
    return Math.ceil(this.dataset.train.n / this.job.batchSize)
  }

  get finished (): boolean {
    return this.progress.epoch >= this.job.epochs
  }

  /** Fraction of the current epoch done. */
  get epochProgress (): number {
    return this.progress.cursor / this.dataset.train.n
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
    const train = this.dataset.train
    if (this.orderEpoch !== this.progress.epoch) {
      this.order = epochOrder(train.n, this.job.seed, this.progress.epoch)
      this.orderEpoch = this.progress.epoch
    }
    const batch = gatherBatch(train, this.order, this.progress.cursor, this.job.batchSize, this.dataset.classes)
    const { loss, grads } = tf.tidy(() => {
      const x = tf.tensor2d(batch.x, [batch.n, train.features])
      const y = tf.tensor2d(batch.y, [batch.n, this.dataset.classes])
      return this.net.lossAndGrads(x, y)
    })
    const lossValue = (await loss.data())[0]
    loss.dispose()
    return { grads, loss: lossValue, samples: batch.n }
  }

  /** Applies an update with the optimizer and advances the data position past its batch. */
  applyUpdate (update: Update): void {
    const named: Record<string, tf.Tensor> = {}
    this.net.variables.forEach((v, i) => { named[v.name] = update.grads[i] })
    this.optimizer.applyGradients(named)
    for (const g of update.grads) g.dispose()
    this.loss = this.loss === null ? update.loss : LOSS_SMOOTHING * this.loss + (1 - LOSS_SMOOTHING) * update.loss
    this.samplesSeen += update.samples
    this.rate.push({ t: performance.now(), n: update.samples })
    const p = this.progress
    p.step += 1
    p.cursor += update.samples
    if (p.cursor >= this.dataset.train.n) {
      p.cursor = 0
      p.epoch += 1
    }
  }

  /** True right after the last batch of an epoch was applied. */
  get atEpochBoundary (): boolean {
    return this.progress.cursor === 0 && this.progress.step > 0
  }

  /** Loss and accuracy on the held-out test rows. */
  async evaluate (): Promise<Evaluation> {
    await yieldToEventLoop()
    const test = this.dataset.test
    const classes = this.dataset.classes
    const y = new Float32Array(test.n * classes)
    for (let i = 0; i < test.n; i++) y[i * classes + test.y[i]] = 1
    const [loss, accuracy] = tf.tidy(() => {
      const xs = tf.tensor2d(test.x, [test.n, test.features])
      const ys = tf.tensor2d(y, [test.n, classes])
      const logits = this.net.predict(xs)
      const l = tf.losses.softmaxCrossEntropy(ys, logits).dataSync()[0]
      const correct = tf.equal(tf.argMax(logits, 1), tf.argMax(ys, 1)).sum().dataSync()[0]
      return [l, correct / test.n]
    })
    this.lastEvaluation = { epoch: this.progress.epoch, step: this.progress.step, loss, accuracy }
    return this.lastEvaluation
  }

  /** All weights as one flat vector, in variable order. */
  flatWeights (): Float32Array {
    const n = this.net.variables.reduce((s, v) => s + v.size, 0)
    const out = new Float32Array(n)
    let offset = 0
    for (const v of this.net.variables) {
      out.set(v.dataSync() as Float32Array, offset)
      offset += v.size
    }
    return out
  }

  /** sha256 of the weights' bytes (first 16 hex digits); identical weights give identical hashes. */
  weightsHash (): string {
    if (this.hashCache?.step === this.progress.step) return this.hashCache.hash
    const w = this.flatWeights()
    const hash = createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex').slice(0, 16)
    this.hashCache = { step: this.progress.step, hash }
    return hash
  }

  /** Captures everything needed to resume: weights, optimizer state, position. */
  async capture (): Promise<Checkpoint> {
    const optimizerState = await this.optimizer.getWeights()
    const optimizer = optimizerState.map(({ name, tensor }) => ({ name, shape: tensor.shape, values: tensor.dataSync() as Float32Array }))
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
    if (ckpt.optimizer.length > 0) {
      const tensors = ckpt.optimizer.map(o => ({ name: o.name, tensor: tf.tensor(o.values, o.shape) }))
      await this.optimizer.setWeights(tensors)
      for (const t of tensors) t.tensor.dispose()
    }
    this.progress = { ...ckpt.progress }
    this.loss = ckpt.loss
    this.lastEvaluation = ckpt.evaluation
    this.hashCache = null
  }

  dispose (): void {
    this.net.dispose()
    this.optimizer.dispose()
  }
}
