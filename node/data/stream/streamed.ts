/**
 * An imported data set's training rows, read from its shard files: a pass
 * (order.ts) is a sequence of windows; the reader decodes the window a batch
 * needs and, meanwhile, the next one (the next pass's first at a pass's
 * end), so that the file reads and most of the decoding happen while the
 * trainer computes or waits on the swarm. At most two windows are held, plus
 * the open files' indexes: memory does not grow with the data set.
 *
 * A shard that is not on disk is asked for through `ensureShard` (the peer
 * fetches it) before it is opened; only the shards holding the asked rows
 * are ever opened. Blocks are decoded in a worker thread (decoder.ts) unless
 * `decode: 'inline'`.
 */
import { existsSync } from 'node:fs'
import type { Batch, BatchReader, Examples, TrainingRows } from '../types.ts'
import type { DatasetDescription } from '../imported/description.ts'
import { IncompleteDatasetError } from '../imported/errors.ts'
import { shardPath } from '../imported/store.ts'
import { shardId } from '../shards.ts'
import { PassOrder, blocksOf } from './order.ts'
import type { Block } from './order.ts'
import type { RowSet } from './rows.ts'
import { InlineDecoder, WorkerDecoder } from './decoder.ts'
import type { BlockDecoder } from './decoder.ts'

/**
 * Features (float32) one block holds at most: with the rows of a record batch (8192) as the upper bound, this
 * sets how many rows a block has (4096 for 128 features, 1304 for 402, 128 for 4096 text buckets).
 */
export const BLOCK_BYTES = 2 * 1024 * 1024
/** Blocks per window: rows are shuffled across this many random places of the set; a window holds 16 MiB of features at most. */
export const BLOCKS_PER_WINDOW = 8
/** Rows per block at most (the importer's record batch size: a block reads one or two record batches). */
const MAX_BLOCK_ROWS = 8192

/** Rows per block for rows of `features` floats. */
export function blockRowsFor (features: number): number {
  return Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.floor(BLOCK_BYTES / (4 * Math.max(1, features)))))
}

export interface StreamedRowsInit {
  /** The data set's directory (`<dataDir>/datasets/<id>`). */
  dir: string
  description: DatasetDescription
  /** Makes shard `shardId`'s file present (see LoadOptions.ensureShard); absent: a missing shard is an IncompleteDatasetError. */
  ensureShard?: (shardId: string) => Promise<void>
  /** Rows per block (default: blockRowsFor(features)) and blocks per window (BLOCKS_PER_WINDOW); the order depends on both. */
  blockRows?: number
  blocksPerWindow?: number
  /** Where blocks are decoded: in a worker thread (default), or in this one. */
  decode?: 'worker' | 'inline'
}

export class StreamedRows implements TrainingRows {
  readonly n: number
  readonly features: number
  readonly examples = null
  readonly blockRows: number
  readonly blocksPerWindow: number
  /** Each training shard's first global row, then the row count. */
  readonly shardStarts: number[]
  private readonly init: StreamedRowsInit

  constructor (init: StreamedRowsInit) {
    const d = init.description
    this.init = init
    this.features = d.features
    this.n = d.counts.trainRows
    this.blockRows = init.blockRows ?? blockRowsFor(d.features)
    this.blocksPerWindow = init.blocksPerWindow ?? BLOCKS_PER_WINDOW
    this.shardStarts = [0]
    for (const s of d.shards) this.shardStarts.push(this.shardStarts[this.shardStarts.length - 1] + s.rows)
  }

  batches (seed: number, classes: number): StreamedBatches {
    return new StreamedBatches(this, this.init, seed, classes)
  }
}

interface LoadedWindow {
  /** Per block of the window, its rows. */
  parts: Examples[]
  /** Window-local row where each part starts. */
  offsets: number[]
  perm: Uint32Array
  blocks: Block[]
}

interface PassKey {
  rows: RowSet
  pass: number
  order: PassOrder
}

export class StreamedBatches implements BatchReader {
  private readonly source: StreamedRows
  private readonly init: StreamedRowsInit
  private readonly decoder: BlockDecoder
  private readonly seed: number
  private readonly classes: number
  /** The orders of the pass being read and of the one after it. */
  private passes: PassKey[] = []
  /** Loaded or loading windows, by `${pass}:${window}` (for the current row set). */
  private readonly windows = new Map<string, Promise<LoadedWindow>>()
  /** Shards being made present through ensureShard, so that the blocks of one shard ask once. */
  private readonly ensuring = new Map<number, Promise<void>>()
  private closed = false
  /** Figures for status and benchmarks: windows loaded, rows decoded, and reads that waited for their window (how long in all). */
  readonly stats = { windows: 0, rows: 0, waits: 0, waitMs: 0 }

  constructor (source: StreamedRows, init: StreamedRowsInit, seed: number, classes: number) {
    this.source = source
    this.init = init
    this.decoder = init.decode === 'inline' ? new InlineDecoder(init.description) : new WorkerDecoder(init.description)
    this.seed = seed
    this.classes = classes
  }

  async read (rows: RowSet, pass: number, cursor: number, size: number): Promise<Batch> {
    const order = this.orderOf(rows, pass)
    const end = Math.min(cursor + size, order.size)
    const n = Math.max(0, end - cursor)
    const f = this.source.features
    const x = new Float32Array(n * f)
    const y = new Float32Array(n * this.classes)
    const ids = new Uint32Array(n)
    let pos = cursor
    let i = 0
    let w = -1
    while (pos < end) {
      w = order.windowAt(pos)
      const win = await this.timed(this.window(order, pass, w))
      const { start, rows: count } = order.windows[w]
      const stop = Math.min(end, start + count)
      for (; pos < stop; pos++, i++) {
        const j = win.perm[pos - start]
        let k = win.offsets.length - 1
        while (win.offsets[k] > j) k--
        const part = win.parts[k]
        const r = j - win.offsets[k]
        x.set(part.x.subarray(r * f, (r + 1) * f), i * f)
        y[i * this.classes + part.y[r]] = 1
        ids[i] = win.blocks[k].start + r
      }
    }
    if (w >= 0) this.readAhead(rows, pass, order, w)
    return { x, y, n, rows: ids }
  }

  /** Awaits a window, counting the reads that had to wait for theirs. */
  private async timed (loading: Promise<LoadedWindow>): Promise<LoadedWindow> {
    let settled = false
    void loading.then(() => { settled = true }, () => { settled = true })
    await Promise.resolve()
    if (settled) return await loading
    const started = performance.now()
    try {
      return await loading
    } finally {
      this.stats.waits += 1
      this.stats.waitMs += performance.now() - started
    }
  }

  async close (): Promise<void> {
    this.closed = true
    this.windows.clear()
    await this.decoder.close()
  }

  /** The order of pass `pass` over `rows`; a new row set drops every window read for the old one. */
  private orderOf (rows: RowSet, pass: number): PassOrder {
    if (this.passes.length > 0 && !this.passes[0].rows.equals(rows)) {
      this.passes = []
      this.windows.clear()
    }
    let key = this.passes.find(p => p.pass === pass)
    if (key === undefined) {
      key = { rows, pass, order: new PassOrder(blocksOf(rows, this.source.shardStarts, this.source.blockRows), this.source.blocksPerWindow, this.seed, pass) }
      this.passes = [...this.passes.filter(p => p.pass === pass - 1 || p.pass === pass + 1), key].sort((a, b) => a.pass - b.pass).slice(-2)
    }
    return key.order
  }

  /** Starts loading the window after `w` (the next pass's first after the last), and forgets every window before `w`. */
  private readAhead (rows: RowSet, pass: number, order: PassOrder, w: number): void {
    let next: { pass: number, order: PassOrder, w: number }
    if (w + 1 < order.windows.length) next = { pass, order, w: w + 1 }
    else next = { pass: pass + 1, order: this.orderOf(rows, pass + 1), w: 0 }
    const keep = new Set([`${pass}:${w}`, `${next.pass}:${next.w}`])
    for (const key of this.windows.keys()) if (!keep.has(key)) this.windows.delete(key)
    if (next.order.windows.length > 0) void this.window(next.order, next.pass, next.w).catch(() => {})
  }

  private async window (order: PassOrder, pass: number, w: number): Promise<LoadedWindow> {
    const key = `${pass}:${w}`
    let loading = this.windows.get(key)
    if (loading === undefined) {
      loading = this.load(order, w)
      this.windows.set(key, loading)
      // a failed load (a shard not there yet) is tried again by the next read
      loading.catch(() => { if (this.windows.get(key) === loading) this.windows.delete(key) })
    }
    return await loading
  }

  private async load (order: PassOrder, w: number): Promise<LoadedWindow> {
    const { blocks } = order.windows[w]
    const starts = this.source.shardStarts
    const shards = this.init.description.shards
    const parts = await Promise.all(blocks.map(async b => {
      const path = await this.present(b.shard)
      return await this.decoder.decode(path, shards[b.shard], b.start - starts[b.shard], b.end - starts[b.shard])
    }))
    const offsets: number[] = []
    let at = 0
    for (const p of parts) {
      offsets.push(at)
      at += p.n
    }
    this.stats.windows += 1
    this.stats.rows += at
    return { parts, offsets, perm: order.rowPermutation(w), blocks }
  }

  /** The path of shard `index`'s file, there (fetched first through ensureShard when it is not on disk). */
  private async present (index: number): Promise<string> {
    if (this.closed) throw new Error('the batch reader is closed')
    const { dir, description: d, ensureShard } = this.init
    const shard = d.shards[index]
    const path = shardPath(dir, shard)
    if (!existsSync(path) && ensureShard !== undefined) {
      let ensuring = this.ensuring.get(index)
      if (ensuring === undefined) {
        ensuring = ensureShard(shardId(index))
        this.ensuring.set(index, ensuring)
        void ensuring.finally(() => { this.ensuring.delete(index) }).catch(() => {})
      }
      await ensuring
    }
    if (!existsSync(path)) throw new IncompleteDatasetError(`shard ${index} (${shard.file}) is not in ${dir}: fetch it from a peer that has it`, [shard.sha256])
    return path
  }
}
