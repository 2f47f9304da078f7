/**
 * Cutting a data set's training rows into shards. The training rows are
 * already a seeded shuffle of the data set, so contiguous ranges are random
 * samples of it; a shard's hash covers its features and labels.
 */
import { createHash } from 'node:crypto'
import type { Examples, TrainingRows } from './types.ts'
import type { DatasetDescription } from './imported/description.ts'
import { RowSet } from './stream/rows.ts'

export interface ShardSpec {
  id: string
  index: number
  start: number
  end: number
  rows: number
  hash: string
}

export function shardId (index: number): string {
  return `s${String(index).padStart(4, '0')}`
}

/** `count` shards over `from`'s rows (in memory: a built-in data set's), sizes differing by at most one. */
export function cutShards (rows: Examples | TrainingRows, count: number): ShardSpec[] {
  const from = 'x' in rows ? rows : rows.examples
  if (from === null) throw new TypeError('cutShards needs the rows in memory (an imported data set was cut into shards at import)')
  const n = from.n
  const out: ShardSpec[] = []
  for (let i = 0; i < count; i++) {
    const start = Math.floor((i * n) / count)
    const end = Math.floor(((i + 1) * n) / count)
    const f = from.features
    const h = createHash('sha256')
    h.update(new Uint8Array(from.x.buffer, from.x.byteOffset + start * f * 4, (end - start) * f * 4))
    h.update(from.y.subarray(start, end))
    out.push({ id: shardId(i), index: i, start, end, rows: end - start, hash: h.digest('hex').slice(0, 32) })
  }
  return out
}

/** The training rows of a set of shards. */
export function rowsOf (shards: ShardSpec[], ids: Iterable<string>): RowSet {
  const byId = new Map(shards.map(s => [s.id, s]))
  const ranges: Array<[number, number]> = []
  for (const id of ids) {
    const s = byId.get(id)
    if (s !== undefined) ranges.push([s.start, s.end])
  }
  return RowSet.fromRanges(ranges)
}

/**
 * The shards of an imported data set, as the manifest shares them: one per
 * shard file, in file order, over the rows `loadDataset(id, { dataDir })`
 * returns as `train` (shard i's rows are contiguous there). `hash` is the
 * file's sha256, which `/peer/shard/1.0.0` fetches by. The job's `shards`
 * count does not apply: an imported data set was cut at import time.
 */
export function importedShardSpecs (d: DatasetDescription): ShardSpec[] {
  let start = 0
  return d.shards.map((s, i) => {
    const spec = { id: shardId(i), index: i, start, end: start + s.rows, rows: s.rows, hash: s.sha256 }
    start += s.rows
    return spec
  })
}
