/**
 * Gradients computed in a worker thread (compute-worker.ts), so that the thread that runs the network, the
 * rounds and the control API is free while a batch trains: heartbeats and gossip are answered on time, and
 * the bytes of other members' rounds are read as they arrive.
 *
 * The worker holds its own copy of the net. For each batch the trainer writes the current weights into a
 * buffer shared with the worker (one copy, variable after variable), posts the batch, and the worker sets its
 * variables from that buffer, computes loss and gradients, and leaves the gradients in a second shared
 * buffer. An evaluation goes the same way (the test set is sent once). The worker runs the same backend and
 * kernels on the same weights, so its gradients and scores are bit for bit those the trainer would have
 * computed itself (test/compute-worker.test.ts). The optimizer step, checkpoints, the data position and
 * everything else stay with the trainer.
 *
 * Only the wasm backend: the native ones (tfjs-node) load once per process, not once per thread.
 */
import { Worker } from 'node:worker_threads'
import type { Job } from '../../protocols/job/index.ts'
import type { Examples } from '../data/types.ts'
import type { LayersModelSource } from './layers-net.ts'

/** What the worker needs to build the same net as the trainer's. */
export interface ComputeInit {
  job: Job
  /** The data set's shape (Dataset: inputShape, features, classes). */
  shape: { inputShape: number[], features: number, classes: number }
  /** The job's user model, or null for a preset. */
  model: LayersModelSource | null
  /** Elements of each of the net's variables, in order: the worker's net must match. */
  sizes: number[]
}

export type ComputeRequest =
  /** `offsets[i]`: where variable i (of `sizes[i]` floats) starts in the weights and gradients buffers. */
  | { type: 'init', init: Omit<ComputeInit, 'sizes'>, weights: SharedArrayBuffer, grads: SharedArrayBuffer, sizes: number[], offsets: number[] }
  /** One batch: its features (`xLength` floats) then its one-hot labels in the batch buffer, sent when it is new. */
  | { type: 'step', id: number, xLength: number, yLength: number, n: number, step: number, batch?: SharedArrayBuffer }
  /** The test loss and accuracy of the weights in the weights buffer over test rows [from, to); the test set comes with the first one. */
  | { type: 'evaluate', id: number, classes: number, from: number, to: number, test?: Examples }

export type ComputeReply =
  | { type: 'ready' }
  | { type: 'done', id: number, loss: number }
  | { type: 'evaluated', id: number, loss: number, accuracy: number }
  | { type: 'error', id: number | null, message: string }

/** The worker failed (its net could not be built, a batch failed, the thread died). */
export class ComputeWorkerError extends Error {
  override name = 'ComputeWorkerError'
}

interface Pending { resolve: (reply: ComputeReply) => void, reject: (err: Error) => void }

export class ComputeWorker {
  readonly #worker: Worker
  readonly #weights: Float32Array
  readonly #grads: Float32Array
  readonly #offsets: number[]
  readonly #sizes: number[]
  #pending = new Map<number, Pending>()
  #ready: Pending | null = null
  #next = 0
  #failed: Error | null = null
  #batch = new Float32Array(new SharedArrayBuffer(0))
  #test: Examples | null = null

  private constructor (init: ComputeInit) {
    this.#sizes = [...init.sizes]
    this.#offsets = []
    let total = 0
    for (const n of this.#sizes) {
      this.#offsets.push(total)
      total += n
    }
    const weights = new SharedArrayBuffer(total * 4)
    const grads = new SharedArrayBuffer(total * 4)
    this.#weights = new Float32Array(weights)
    this.#grads = new Float32Array(grads)
    this.#worker = new Worker(new URL('./compute-worker.ts', import.meta.url), { env: process.env })
    this.#worker.on('message', (m: ComputeReply) => { this.#onReply(m) })
    this.#worker.on('error', err => { this.#fail(new ComputeWorkerError(`compute worker failed: ${err.message}`)) })
    this.#worker.on('exit', code => { this.#fail(new ComputeWorkerError(`compute worker exited (code ${code})`)) })
    const { sizes: _, ...rest } = init
    this.#worker.postMessage({ type: 'init', init: rest, weights, grads, sizes: this.#sizes, offsets: this.#offsets } satisfies ComputeRequest)
  }

  /** Starts a worker and builds its net; rejects with ComputeWorkerError when it cannot. */
  static async start (init: ComputeInit): Promise<ComputeWorker> {
    const w = new ComputeWorker(init)
    try {
      await new Promise<ComputeReply>((resolve, reject) => { w.#ready = { resolve, reject } })
    } catch (err) {
      w.close()
      throw err
    }
    w.#worker.unref()
    return w
  }

  /**
   * Loss and gradients of one batch, computed from these weights (the trainer's variables, in order). The
   * gradients are views of the shared buffer, valid until the next call.
   */
  async gradients (weights: Float32Array[], batch: { x: Float32Array, y: Float32Array, n: number }, step: number): Promise<{ loss: number, grads: Float32Array[] }> {
    this.#assertIdle()
    // the batch goes through a shared buffer too: a message would clone a view with its whole buffer (a batch
    // reader's view of a block holds the block), and a new buffer a step drives V8's full collections
    const fresh = this.#batchBuffer(batch.x.length + batch.y.length)
    this.#batch.set(batch.x, 0)
    this.#batch.set(batch.y, batch.x.length)
    const reply = await this.#ask(weights, id => ({ type: 'step', id, xLength: batch.x.length, yLength: batch.y.length, n: batch.n, step, ...(fresh ? { batch: this.#batch.buffer } : {}) }))
    if (reply.type !== 'done') throw new ComputeWorkerError(`compute worker: ${reply.type} for a batch`)
    return { loss: reply.loss, grads: this.#sizes.map((n, i) => this.#grads.subarray(this.#offsets[i], this.#offsets[i] + n)) }
  }

  /**
   * Test loss and accuracy of these weights over the rows [from, to) of `test` (all of them by default; the
   * same `test` on every call: it is sent once).
   */
  async evaluate (weights: Float32Array[], test: Examples, classes: number, from = 0, to = test.n): Promise<{ loss: number, accuracy: number }> {
    // a copy of the rows alone (not the buffer they may view), once
    const send = this.#test !== test ? { x: test.x.slice(), y: test.y.slice(), n: test.n, features: test.features } : undefined
    this.#test = test
    const reply = await this.#ask(weights, id => ({ type: 'evaluate', id, classes, from, to, ...(send !== undefined ? { test: send } : {}) }))
    if (reply.type !== 'evaluated') throw new ComputeWorkerError(`compute worker: ${reply.type} for an evaluation`)
    return { loss: reply.loss, accuracy: reply.accuracy }
  }

  /** Writes the weights into the shared buffer, sends the request `make` builds, and waits for its reply. */
  async #ask (weights: Float32Array[], make: (id: number) => ComputeRequest): Promise<ComputeReply> {
    this.#assertIdle()
    if (weights.length !== this.#sizes.length) throw new RangeError(`${weights.length} variables, the worker's net has ${this.#sizes.length}`)
    for (let i = 0; i < weights.length; i++) {
      if (weights[i].length !== this.#sizes[i]) throw new RangeError(`variable ${i} has ${weights[i].length} elements, the worker's ${this.#sizes[i]}`)
      this.#weights.set(weights[i], this.#offsets[i])
    }
    const id = this.#next++
    const reply = new Promise<ComputeReply>((resolve, reject) => { this.#pending.set(id, { resolve, reject }) })
    // the thread is waited on now: it keeps the process alive until it answers
    this.#worker.ref()
    try {
      this.#worker.postMessage(make(id))
      return await reply
    } finally {
      this.#worker.unref()
    }
  }

  /** Throws unless a request may be sent now: the worker is up and answering nothing (one request at a time). */
  #assertIdle (): void {
    if (this.#failed !== null) throw this.#failed
    if (this.#pending.size > 0) throw new Error('compute worker: one request at a time')
  }

  /** Makes the batch buffer hold at least `floats`; true when it is a new one (the worker is sent it). */
  #batchBuffer (floats: number): boolean {
    if (this.#batch.length >= floats) return false
    this.#batch = new Float32Array(new SharedArrayBuffer(floats * 4))
    return true
  }

  /** Stops the thread (a batch under way is rejected). */
  close (): void {
    this.#fail(new ComputeWorkerError('compute worker closed'))
    void this.#worker.terminate()
  }

  #onReply (m: ComputeReply): void {
    if (m.type === 'ready') {
      this.#ready?.resolve(m)
      this.#ready = null
      return
    }
    if (m.type === 'error' && m.id === null) {
      this.#fail(new ComputeWorkerError(m.message))
      return
    }
    if (m.id === null) return
    const p = this.#pending.get(m.id)
    if (p === undefined) return
    this.#pending.delete(m.id)
    if (m.type === 'error') p.reject(new ComputeWorkerError(m.message))
    else p.resolve(m)
  }

  #fail (err: Error): void {
    this.#failed ??= err
    this.#ready?.reject(err)
    this.#ready = null
    for (const p of this.#pending.values()) p.reject(err)
    this.#pending.clear()
  }
}
