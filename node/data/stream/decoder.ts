/**
 * Decoding blocks of rows from shard files into features, in this thread
 * (`InlineDecoder`) or in a worker thread (`WorkerDecoder`, the default for
 * training), so that the Arrow reads and the feature transform run beside
 * the tensor work instead of between its steps. The worker holds its own
 * open files; a block's features come back as transferred buffers (no copy).
 * A worker that cannot start (its module fails to load) leaves the decoding
 * to this thread, logged nowhere but visible as `WorkerDecoder.inline`.
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

interface Pending {
  request: DecodeRequest
  resolve: (e: Examples) => void
  reject: (err: Error) => void
}

export class WorkerDecoder implements BlockDecoder {
  private readonly description: DatasetDescription
  private readonly script: URL
  private worker: Worker | null = null
  /** Set once a worker failed before its first answer: decoding stays in this thread. */
  inline: InlineDecoder | null = null
  private answered = false
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private closed = false

  /** `script`: the worker's module (for tests). */
  constructor (description: DatasetDescription, script = new URL('./decode-worker.ts', import.meta.url)) {
    this.description = description
    this.script = script
  }

  async decode (path: string, shard: ShardFileDescription, start: number, end: number): Promise<Examples> {
    if (this.closed) throw new Error('the decoder is closed')
    if (this.inline !== null) return await this.inline.decode(path, shard, start, end)
    const worker = this.start()
    const request = { id: this.nextId++, path, shard, start, end }
    return await new Promise<Examples>((resolve, reject) => {
      this.pending.set(request.id, { request, resolve, reject })
      worker.ref()
      worker.postMessage(request satisfies DecodeRequest)
    })
  }

  async close (): Promise<void> {
    this.closed = true
    const worker = this.worker
    this.worker = null
    // blocks still asked for (read ahead) are not wanted any more
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) p.reject(new Error('the decoder is closed'))
    if (worker !== null) {
      // not awaited: terminate()'s promise may never settle once nothing else keeps the process up
      worker.unref()
      void worker.terminate().catch(() => {})
    }
    await this.inline?.close()
  }

  /** The worker, started on first use; one that failed is replaced by the next decode. */
  private start (): Worker {
    if (this.worker !== null) return this.worker
    const worker = new Worker(this.script, { workerData: { description: this.description } })
    worker.unref()
    worker.on('message', (a: DecodeAnswer) => {
      this.answered = true
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
      if (this.worker !== worker) return
      this.worker = null
      const pending = [...this.pending.values()]
      this.pending.clear()
      if (!this.answered && !this.closed) {
        // it never worked: decode here from now on, the waiting blocks included
        const inline = this.inline ??= new InlineDecoder(this.description)
        for (const p of pending) inline.decode(p.request.path, p.request.shard, p.request.start, p.request.end).then(p.resolve, p.reject)
      } else {
        for (const p of pending) p.reject(err)
      }
    }
    worker.on('error', fail)
    worker.on('exit', code => { fail(new Error(`the decode worker exited (code ${code})`)) })
    this.worker = worker
    return worker
  }
}
