/**
 * The text columns' document frequencies (per bucket, how many documents of
 * a training shard touch it), counted in a worker thread while the import's
 * own thread writes the shards: hashing every document's n-grams is the
 * largest part of the write pass that is not moving bytes.
 *
 * The counts are integers, so the order in which batches are counted does
 * not change them: the result is the same as counting in the import's thread
 * (`countInline`, where no worker can start). Each batch's text is the bytes
 * and offsets of the record batch just written (its own copies, moved to the
 * worker without a copy).
 */
import { Worker } from 'node:worker_threads'
import { distinctNgramsUtf8 } from '../text.ts'

export interface DfBatch {
  slot: number
  data: Uint8Array
  offsets: Int32Array
  length: number
}
export type DfMessage = { kind: 'batch', batch: DfBatch } | { kind: 'finish' }
export type DfAnswer = { kind: 'counts', counts: Float64Array[] } | { kind: 'error', message: string }

/** Adds each document's distinct buckets to `df` (one count per document and bucket). */
export class DfCounter {
  private readonly buckets: number
  private readonly seen: Uint8Array
  private readonly touched: Int32Array
  readonly slots: Float64Array[]

  constructor (buckets: number, slots: number) {
    this.buckets = buckets
    this.seen = new Uint8Array(buckets)
    this.touched = new Int32Array(buckets)
    this.slots = Array.from({ length: slots }, () => new Float64Array(buckets))
  }

  add ({ slot, data, offsets, length }: DfBatch): void {
    const df = this.slots[slot]
    const { seen, touched, buckets } = this
    for (let i = 0; i < length; i++) {
      const n = distinctNgramsUtf8(data, offsets[i], offsets[i + 1], buckets, seen, touched)
      for (let t = 0; t < n; t++) {
        const b = touched[t]
        df[b] += 1
        seen[b] = 0
      }
    }
  }
}

/** Counts batches in a worker (started on the first batch), or here where it cannot start. */
export class DocumentFrequencies {
  private readonly buckets: number
  private readonly slotCount: number
  private worker: Worker | null = null
  private inline: DfCounter | null = null
  private failed: Error | null = null
  private readonly done: Promise<Float64Array[]>
  private settle!: { resolve: (c: Float64Array[]) => void, reject: (e: Error) => void }

  constructor (buckets: number, slots: number) {
    this.buckets = buckets
    this.slotCount = slots
    this.done = new Promise((resolve, reject) => { this.settle = { resolve, reject } })
    this.done.catch(() => {})
  }

  /** Counts `batch` (its buffers are moved to the worker: the caller must not use them again). */
  add (batch: DfBatch): void {
    if (this.inline !== null) {
      this.inline.add(batch)
      return
    }
    const worker = this.start()
    if (worker === null) {
      (this.inline ??= new DfCounter(this.buckets, this.slotCount)).add(batch)
      return
    }
    worker.postMessage({ kind: 'batch', batch } satisfies DfMessage, [batch.data.buffer as ArrayBuffer, batch.offsets.buffer as ArrayBuffer])
  }

  /** Every slot's document frequencies, once every batch is counted. */
  async finish (): Promise<Float64Array[]> {
    if (this.failed !== null) throw this.failed
    if (this.worker === null) return (this.inline ?? new DfCounter(this.buckets, this.slotCount)).slots
    this.worker.ref()
    this.worker.postMessage({ kind: 'finish' } satisfies DfMessage)
    try {
      return await this.done
    } finally {
      this.close()
    }
  }

  close (): void {
    const w = this.worker
    this.worker = null
    if (w !== null) void w.terminate().catch(() => {})
  }

  private start (): Worker | null {
    if (this.worker !== null) return this.worker
    let worker: Worker
    try {
      worker = new Worker(new URL('./text-df-worker.ts', import.meta.url), { workerData: { buckets: this.buckets, slots: this.slotCount } })
    } catch {
      return null
    }
    // nothing to wait for until finish (an import that fails before it must not be kept alive by the worker)
    worker.unref()
    worker.on('message', (a: DfAnswer) => {
      if (a.kind === 'counts') this.settle.resolve(a.counts)
      else this.fail(new Error(`counting document frequencies failed: ${a.message}`))
    })
    worker.on('error', err => { this.fail(err) })
    worker.on('exit', code => { this.fail(new Error(`the document-frequency worker exited (code ${code})`)) })
    this.worker = worker
    return worker
  }

  private fail (err: Error): void {
    if (this.failed !== null) return
    this.failed = err
    this.settle.reject(err)
  }
}
