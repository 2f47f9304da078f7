/**
 * The order in which one pass visits a set of rows read from shard files, as
 * MosaicML's streaming data sets shuffle (their `py1b`): the rows are cut
 * into blocks of contiguous rows inside one shard, the pass shuffles the
 * blocks, groups them into windows of a few blocks, and shuffles the rows
 * within each window. A reader holds one window (and the next, read ahead),
 * never the whole set, and reads each block as a few contiguous record
 * batches of one shard file.
 *
 * Everything is a function of (seed, pass, rows, the shards' row counts,
 * the block size): a restarted peer that restores its pass and cursor
 * resumes exactly where it stopped, mid-window included, and every row of
 * the set is visited exactly once per pass.
 */
import { mixSeed, permutation } from '../random.ts'
import type { RowSet } from './rows.ts'

/** Contiguous global training rows `[start, end)` inside shard `shard`. */
export interface Block {
  start: number
  end: number
  shard: number
}

export interface Window {
  /** The window's blocks, in the pass's shuffled order; window-local row j counts through them in this order. */
  blocks: Block[]
  /** Position of the window's first row in the pass. */
  start: number
  rows: number
}

/**
 * The blocks of `rows`: each range cut at shard boundaries (`shardStarts`:
 * each shard's first global row, then the total) and at multiples of
 * `blockRows` from its shard's first row, so that a block never spans two
 * shards and the same row falls in the same block whatever else the set holds.
 */
export function blocksOf (rows: RowSet, shardStarts: readonly number[], blockRows: number): Block[] {
  if (!Number.isInteger(blockRows) || blockRows < 1) throw new RangeError(`blockRows must be a positive integer, not ${blockRows}`)
  const total = shardStarts[shardStarts.length - 1] ?? 0
  const out: Block[] = []
  for (const [from, to] of rows.ranges) {
    if (to > total) throw new RangeError(`rows up to ${to} asked for, but the shards hold ${total}`)
    let s = from
    let k = shardOf(shardStarts, s)
    while (s < to) {
      while (shardStarts[k + 1] <= s) k++
      const first = shardStarts[k]
      const blockEnd = Math.min(first + (Math.floor((s - first) / blockRows) + 1) * blockRows, shardStarts[k + 1])
      const end = Math.min(to, blockEnd)
      out.push({ start: s, end, shard: k })
      s = end
    }
  }
  return out
}

/** The shard holding global row `row` (the last k with shardStarts[k] <= row). */
function shardOf (shardStarts: readonly number[], row: number): number {
  let lo = 0
  let hi = shardStarts.length - 2
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (shardStarts[mid] <= row) lo = mid
    else hi = mid - 1
  }
  return lo
}

export class PassOrder {
  readonly windows: Window[]
  /** Rows in the pass. */
  readonly size: number
  private readonly seed: number

  constructor (blocks: readonly Block[], blocksPerWindow: number, seed: number, pass: number) {
    this.seed = mixSeed(seed, pass)
    const order = permutation(blocks.length, this.seed)
    this.windows = []
    let start = 0
    for (let i = 0; i < order.length; i += blocksPerWindow) {
      const mine = Array.from(order.subarray(i, i + blocksPerWindow), k => blocks[k])
      const rows = mine.reduce((n, b) => n + b.end - b.start, 0)
      this.windows.push({ blocks: mine, start, rows })
      start += rows
    }
    this.size = start
  }

  /** The window holding pass position `position` (0 <= position < size). */
  windowAt (position: number): number {
    let lo = 0
    let hi = this.windows.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (this.windows[mid].start <= position) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  /** The order of window `w`'s local rows: position `start + i` of the pass is local row `rowPermutation(w)[i]`. */
  rowPermutation (w: number): Uint32Array {
    return permutation(this.windows[w].rows, mixSeed(this.seed, w + 1))
  }

  /** The global row of window `w`'s local row `j`. */
  rowOf (w: number, j: number): number {
    for (const b of this.windows[w].blocks) {
      const n = b.end - b.start
      if (j < n) return b.start + j
      j -= n
    }
    throw new RangeError(`window ${w} has no local row ${j}`)
  }
}
