/**
 * An imported data set's training rows, read from its shard files a block at
 * a time (order.ts): a batch's rows come from the few blocks of its member's
 * window (node/data/epoch.ts), and the reader decodes the blocks asked for
 * ahead while the trainer computes or waits on the swarm. Only the blocks of
 * the last read and of the read-ahead are held, plus the open files'
 * indexes: memory does not grow with the data set.
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
import { blockOf, blockRowsFor } from './order.ts'
import type { Block } from './order.ts'
import { InlineDecoder, WorkerDecoder } from './decoder.ts'
import type { BlockDecoder } from './decoder.ts'

/** Blocks per window: a member draws its rows from this many random places of the set at once; a window holds 16 MiB of features at most. */
export const BLOCKS_PER_WINDOW = 8

export interface StreamedRowsInit {
  /** The data set's directory (`<dataDir>/datasets/<id>`). */
  dir: string
  description: DatasetDescription
  /** Makes shard `shardId`'s file present (see LoadOptions.ensureShard); absent: a missing shard is an IncompleteDatasetError. */
  ensureShard?: (shardId: string) => Promise<void>
  /** Rows per block (default: blockRowsFor(features)) and blocks per window (BLOCKS_PER_WINDOW). */
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
  readonly windowBlocks: number
  /** Each training shard's first global row, then the row count. */
  readonly shardStarts: number[]
  readonly shardRows: readonly number[]
  private readonly init: StreamedRowsInit

  constructor (init: StreamedRowsInit) {
    const d = init.description
    this.init = init
    this.features = d.features
    this.n = d.counts.trainRows
    this.blockRows = init.blockRows ?? blockRowsFor(d.features)
    this.windowBlocks = init.blocksPerWindow ?? BLOCKS_PER_WINDOW
    this.shardStarts = [0]
    for (const s of d.shards) this.shardStarts.push(this.shardStarts[this.shardStarts.length - 1] + s.rows)
    this.shardRows = d.shards.map(s => s.rows)
  }

  batches (classes: number): StreamedBatches {
    return new StreamedBatches(this, this.init, classes)
  }
}

export class StreamedBatches implements BatchReader {
  private readonly source: StreamedRows
  private readonly init: StreamedRowsInit
  private readonly decoder: BlockDecoder
  private readonly classes: number
  /** Loaded or loading blocks, by first row: those of the last read and those asked for ahead. */
  private readonly blocks = new Map<number, Promise<Examples>>()
  private lastRead = new Set<number>()
  private ahead = new Set<number>()
  /** Shards being made present through ensureShard, so that the blocks of one shard ask once. */
  private readonly ensuring = new Map<number, Promise<void>>()
  private closed = false
  /** Figures for status and benchmarks: blocks loaded, rows decoded, and reads that waited for their blocks (how long in all). */
  readonly stats = { blocks: 0, rows: 0, waits: 0, waitMs: 0 }

  constructor (source: StreamedRows, init: StreamedRowsInit, classes: number) {
    this.source = source
    this.init = init
    this.decoder = init.decode === 'inline' ? new InlineDecoder(init.description) : new WorkerDecoder(init.description)
    this.classes = classes
  }

  async read (rows: Uint32Array): Promise<Batch> {
    const n = rows.length
    const f = this.source.features
    const x = new Float32Array(n * f)
    const y = new Float32Array(n * this.classes)
    const of = new Array<Block>(n)
    const used = new Map<number, Block>()
    for (let i = 0; i < n; i++) {
      const b = blockOf(this.source.shardStarts, this.source.blockRows, rows[i])
      of[i] = used.get(b.start) ?? b
      used.set(b.start, of[i])
    }
    this.lastRead = new Set(used.keys())
    const loaded = new Map<number, Examples>()
    await this.timed(Promise.all([...used.values()].map(async b => { loaded.set(b.start, await this.block(b)) })))
    for (let i = 0; i < n; i++) {
      const b = of[i]
      const part = loaded.get(b.start) as Examples
      const r = rows[i] - b.start
      x.set(part.x.subarray(r * f, (r + 1) * f), i * f)
      y[i * this.classes + part.y[r]] = 1
    }
    this.forget()
    return { x, y, n, rows: rows.slice() }
  }

  prefetch (blocks: readonly Block[]): void {
    this.ahead = new Set(blocks.map(b => b.start))
    this.forget()
    for (const b of blocks) void this.block(b).catch(() => {})
  }

  /** Awaits a read's blocks, counting the reads that had to wait for theirs. */
  private async timed<T> (loading: Promise<T>): Promise<T> {
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
    this.blocks.clear()
    await this.decoder.close()
  }

  /** Drops every block neither the last read nor the read-ahead needs. */
  private forget (): void {
    for (const start of this.blocks.keys()) if (!this.lastRead.has(start) && !this.ahead.has(start)) this.blocks.delete(start)
  }

  private async block (b: Block): Promise<Examples> {
    let loading = this.blocks.get(b.start)
    if (loading === undefined) {
      loading = this.load(b)
      this.blocks.set(b.start, loading)
      // a failed load (a shard not there yet) is tried again by the next read
      loading.catch(() => { if (this.blocks.get(b.start) === loading) this.blocks.delete(b.start) })
    }
    return await loading
  }

  private async load (b: Block): Promise<Examples> {
    const first = this.source.shardStarts[b.shard]
    const path = await this.present(b.shard)
    const part = await this.decoder.decode(path, this.init.description.shards[b.shard], b.start - first, b.end - first)
    this.stats.blocks += 1
    this.stats.rows += part.n
    return part
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
