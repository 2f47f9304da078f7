/**
 * One shard file opened for random access: its sha256 is checked once
 * (streamed, 1 MiB at a time), its record batches' row counts are indexed,
 * and a row range is read by loading only the record batches that hold it.
 * Reads of one file are serialised (the Arrow reader keeps one position).
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { AsyncRecordBatchFileReader, RecordBatchReader, Table } from 'apache-arrow'
import type { RecordBatch } from 'apache-arrow'
import type { Examples } from '../dataset.ts'
import type { ShardFileDescription } from '../imported/description.ts'
import { CorruptDatasetError } from '../imported/errors.ts'
import type { FeatureTransform } from '../imported/transform.ts'

/** How much of a file one hashing read holds. */
const HASH_CHUNK_BYTES = 1024 * 1024

/** Files whose bytes were checked against their hash in this process, keyed by path, hash, size and mtime. */
const verified = new Set<string>()

export class ShardFile {
  readonly path: string
  readonly rows: number
  private readonly handle: FileHandle
  private readonly reader: AsyncRecordBatchFileReader
  /** Local row where each record batch starts, then the row count. */
  private readonly batchStarts: number[]
  private queue: Promise<unknown> = Promise.resolve()

  private constructor (path: string, handle: FileHandle, reader: AsyncRecordBatchFileReader, batchStarts: number[]) {
    this.path = path
    this.handle = handle
    this.reader = reader
    this.batchStarts = batchStarts
    this.rows = batchStarts[batchStarts.length - 1]
  }

  /** Opens `path`, which must hold `shard`'s bytes (CorruptDatasetError otherwise). */
  static async open (path: string, shard: ShardFileDescription): Promise<ShardFile> {
    await verify(path, shard.sha256)
    const handle = await open(path, 'r')
    try {
      const reader = await RecordBatchReader.from(handle)
      await reader.open()
      if (!(reader instanceof AsyncRecordBatchFileReader)) throw new CorruptDatasetError(`${path}: not an Arrow IPC file`)
      const starts = [0]
      for (let i = 0; i < reader.numRecordBatches; i++) {
        const batch = await reader.readRecordBatch(i)
        if (batch === null) throw new CorruptDatasetError(`${path}: record batch ${i} of ${reader.numRecordBatches} is missing`)
        starts.push(starts[i] + batch.numRows)
      }
      if (starts[starts.length - 1] !== shard.rows) throw new CorruptDatasetError(`${path}: ${starts[starts.length - 1]} rows, the description says ${shard.rows}`)
      return new ShardFile(path, handle, reader, starts)
    } catch (err) {
      await handle.close().catch(() => {})
      throw err
    }
  }

  /** Local rows `[start, end)` as features and class indices. */
  async read (start: number, end: number, transform: FeatureTransform): Promise<Examples> {
    if (start < 0 || end > this.rows || start >= end) throw new RangeError(`${this.path}: rows [${start}, ${end}) asked for, the shard has ${this.rows}`)
    return await this.serial(async () => {
      const slices: RecordBatch[] = []
      const starts = this.batchStarts
      for (let i = this.batchAt(start); i < starts.length - 1 && starts[i] < end; i++) {
        const batch = await this.reader.readRecordBatch(i)
        if (batch === null) throw new CorruptDatasetError(`${this.path}: record batch ${i} is missing`)
        slices.push(batch.slice(Math.max(0, start - starts[i]), Math.min(end, starts[i + 1]) - starts[i]))
      }
      return transform.examples(new Table(slices))
    })
  }

  async close (): Promise<void> {
    await this.serial(async () => { await this.handle.close() })
  }

  /** The record batch holding local row `row`. */
  private batchAt (row: number): number {
    let lo = 0
    let hi = this.batchStarts.length - 2
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (this.batchStarts[mid] <= row) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  private async serial<T> (work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work)
    this.queue = run.catch(() => {})
    return await run
  }
}

/** Checks a file's sha256, once per process for the same file (streamed: memory is one chunk). */
async function verify (path: string, sha256: string): Promise<void> {
  const s = await stat(path)
  const key = `${path}\0${sha256}\0${s.size}\0${s.mtimeMs}`
  if (verified.has(key)) return
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_CHUNK_BYTES })) hash.update(chunk as Buffer)
  const actual = hash.digest('hex')
  if (actual !== sha256) throw new CorruptDatasetError(`${path}: sha256 is ${actual}, the description says ${sha256}`)
  verified.add(key)
}
