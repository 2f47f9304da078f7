/**
 * Decoding blocks of rows from shard files into features, in this thread
 * (`InlineDecoder`) or in a worker thread (`WorkerDecoder`, the default for
 * training), so that the Arrow reads and the feature transform run beside
 * the tensor work instead of between its steps. The worker holds its own
 * open files; a block's features come back as transferred buffers (no copy).
 */
import { Worker } from 'node:worker_threads'
import type { Examples } from '../types.ts'
import type { DatasetDescription, ShardFileDescription } from '../imported/description.ts'
import { FeatureTransform } from '../imported/transform.ts'
import { ShardFile } from './shard-file.ts'

/** Shard files a decoder keeps open at once (each holds a handle and its record-batch index). */
const MAX_OPEN_FILES = 64

export interface BlockDecoder {
  /** Local rows `[start, end)` of the shard file at `path` (which must be there), as features. */
  decode: (path: string, shard: ShardFileDescription, start: number, end: number) => Promise<Examples>
  close: () => Promise<void>
}

export class InlineDecoder implements BlockDecoder {
  private readonly transform: FeatureTransform
  private readonly files = new Map<string, Promise<ShardFile>>()
  private closed = false

  constructor (description: DatasetDescription) {
    this.transform = new FeatureTransform(description)
  }

  async decode (path: string, shard: ShardFileDescription, start: number, end: number): Promise<Examples> {
    const file = await this.file(path, shard)
    return await file.read(start, end, this.transform)
  }

  async close (): Promise<void> {
    this.closed = true
    const files = [...this.files.values()]
    this.files.clear()
    for (const f of files) await f.then(async file => { await file.close() }, () => {})
  }

  private async file (path: string, shard: ShardFileDescription): Promise<ShardFile> {
    if (this.closed) throw new Error('the decoder is closed')
    let opening = this.files.get(path)
    if (opening !== undefined) {
      // most recently used last
      this.files.delete(path)
      this.files.set(path, opening)
      return await opening
    }
    opening = ShardFile.open(path, shard)
    this.files.set(path, opening)
    opening.catch(() => { if (this.files.get(path) === opening) this.files.delete(path) })
    while (this.files.size > MAX_OPEN_FILES) {
      const [oldest, file] = this.files.entries().next().value as [string, Promise<ShardFile>]
      this.files.delete(oldest)
      void file.then(async f => { await f.close() }, () => {})
    }
    return await opening
  }
}

/** A request to the worker, and its answer. */
export interface DecodeRequest {
  id: number
  path: string
  shard: ShardFileDescription
  start: number
  end: number
}
export type DecodeAnswer = { id: number, x: Float32Array, y: Uint8Array, n: number, features: number } | { id: number, error: { name: string, message: string } }

export class WorkerDecoder implements BlockDecoder {
  private readonly description: DatasetDescription
  private worker: Worker | null = null
  private readonly pending = new Map<number, { resolve: (e: Examples) => void, reject: (err: Error) => void }>()
  private nextId = 0
  private closed = false

  constructor (description: DatasetDescription) {
    this.description = description
  }

  async decode (path: string, shard: ShardFileDescription, start: number, end: number): Promise<Examples> {
    if (this.closed) throw new Error('the decoder is closed')
    const worker = this.start()
    const id = this.nextId++
    return await new Promise<Examples>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      worker.ref()
      worker.postMessage({ id, path, shard, start, end } satisfies DecodeRequest)
    })
  }

  async close (): Promise<void> {
    this.closed = true
    const worker = this.worker
    this.worker = null
    if (worker !== null) await worker.terminate()
  }

  /** The worker, started on first use; one that failed is replaced by the next decode. */
  private start (): Worker {
    if (this.worker !== null) return this.worker
    const worker = new Worker(new URL('./decode-worker.ts', import.meta.url), { workerData: { description: this.description } })
    worker.unref()
    worker.on('message', (a: DecodeAnswer) => {
      const p = this.pending.get(a.id)
      if (p === undefined) return
      this.pending.delete(a.id)
      if (this.pending.size === 0) worker.unref()
      if ('error' in a) {
        const err = new Error(a.error.message)
        err.name = a.error.name
        p.reject(err)
      } else {
        p.resolve({ x: a.x, y: a.y, n: a.n, features: a.features })
      }
    })
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = null
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    }
    worker.on('error', fail)
    worker.on('exit', code => { fail(new Error(`the decode worker exited (code ${code})`)) })
    this.worker = worker
    return worker
  }
}
