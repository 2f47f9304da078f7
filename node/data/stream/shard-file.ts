/**
 * One shard file opened for random access: its sha256 is checked once
 * (1 MiB at a time, into one buffer), its record batches' row counts are
 * indexed from the footer and their metadata (ipc-file.ts), and a row range
 * is read by loading only the record batches that hold it.
 * Reads of one file are serialised (the Arrow reader keeps one position).
 */
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { AsyncRecordBatchFileReader, RecordBatchReader, Table } from 'apache-arrow'
import type { RecordBatch } from 'apache-arrow'
import type { Examples } from '../types.ts'
import type { ShardFileDescription } from '../imported/description.ts'
import { CorruptDatasetError } from '../imported/errors.ts'
import type { FeatureTransform } from '../imported/transform.ts'
import { readLayout, verify } from './ipc-file.ts'

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
    const handle = await open(path, 'r')
    try {
      const s = await handle.stat()
      const key = `${path}\0${shard.sha256}\0${s.size}\0${s.mtimeMs}`
      if (!verified.has(key)) {
        await verify(handle, s.size, shard.sha256, path)
        verified.add(key)
      }
      const corrupt = (what: string): CorruptDatasetError => new CorruptDatasetError(`${path}: ${what}`)
      const { rows } = readLayout(handle.fd, s.size, corrupt)
      const reader = await RecordBatchReader.from(handle)
      await reader.open()
      if (!(reader instanceof AsyncRecordBatchFileReader)) throw corrupt('not an Arrow IPC file')
      if (reader.numRecordBatches !== rows.length) throw corrupt(`${reader.numRecordBatches} record batches, the footer lists ${rows.length}`)
      const starts = [0]
      for (const n of rows) starts.push(starts[starts.length - 1] + n)
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
