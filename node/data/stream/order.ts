/**
 * Blocks: the training rows cut into runs of contiguous rows inside one
 * shard, as MosaicML's streaming data sets cut theirs. A block is what a
 * reader decodes at once (a few contiguous record batches of one shard file)
 * and what the swarm's data position counts (node/data/epoch.ts: an epoch
 * shuffles the blocks, a member draws its batches from a window of a few of
 * them, and the rows within each block come in a seeded order).
 */
import type { RowSet } from './rows.ts'

/**
 * Features (float32) one block holds at most: with the rows of a record batch (8192) as the upper bound, this
 * sets how many rows a block has (4096 for 128 features, 1304 for 402, 128 for 4096 text buckets).
 */
export const BLOCK_BYTES = 2 * 1024 * 1024
/** Rows per block at most (the importer's record batch size: a block reads one or two record batches). */
const MAX_BLOCK_ROWS = 8192

/** Rows per block for rows of `features` floats. */
export function blockRowsFor (features: number): number {
  return Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.floor(BLOCK_BYTES / (4 * Math.max(1, features)))))
}

/** Contiguous global training rows `[start, end)` inside shard `shard`. */
export interface Block {
  start: number
  end: number
  shard: number
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

/** The block holding global row `row` (as blocksOf cuts the whole set). */
export function blockOf (shardStarts: readonly number[], blockRows: number, row: number): Block {
  const shard = shardOf(shardStarts, row)
  const first = shardStarts[shard]
  const start = first + Math.floor((row - first) / blockRows) * blockRows
  return { start, end: Math.min(start + blockRows, shardStarts[shard + 1]), shard }
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
