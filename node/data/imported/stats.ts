/**
 * Normalisation statistics as a map over shards and a sum over peers.
 *
 * `partialStats(layout, rows)` maps the rows of one shard to one Float64Array:
 *
 * ```
 * [ rows,
 *   per numeric column:     n, Σ(x − shift), Σ(x − shift)², min, max
 *   per categorical column: rows per category (index order)
 *   per text column:        documents, then per bucket the documents touching it (df) ]
 * ```
 *
 * `combineStats` merges two such vectors (counts and sums add, min and max
 * take the min and max); `finalizeStats` turns one into means, standard
 * deviations, ranges and document frequencies. The shift per numeric column
 * is fixed in the description (the first pass's mean), so every peer sums
 * the same well-conditioned quantities.
 *
 * Across the swarm, the ring all-reduce sums one Float32Array per peer, and a
 * plain sum of the vectors above would go wrong twice over: min and max do
 * not add, and float32 sums of float64 partial sums lose digits and depend on
 * the order of addition. So the ring vector (`toRingVector`) has two parts:
 *
 * - counts (rows, n, category counts, document frequencies): integers, summed
 *   directly. Float32 adds integers below 2^24 exactly in any order, so the
 *   sum is exact (a total at or above 2^24 is refused with StatsCoverageError).
 * - one slot per shard: a flag and that shard's float statistics (sums, sums
 *   of squares, min, max) with each float64 spelled as four 16-bit limbs, each
 *   limb an integer-valued float32. Each shard is owned by one peer, which
 *   fills its slot; the others send zeros, and x + 0 is exact, so after the
 *   all-reduce every peer holds every shard's statistics bit for bit.
 *
 * `fromRingSum` checks that every shard's flag is exactly 1 (each shard counted
 * once, none missing) and folds the shards' statistics in shard order, the same
 * fold the single-process import does, so the swarm's statistics equal the
 * single-process ones exactly, not just approximately. The price is 16 floats
 * per numeric column per shard on the wire, a few kilobytes for a one-off round.
 */
import type { Table } from 'apache-arrow'
import type { ColumnDescription, StatsDescription } from './description.ts'
import { StatsCoverageError } from './errors.ts'
import { forEachNgram, forEachNgramUtf8 } from '../text.ts'
import type { BatchColumns, NumericArray, Utf8Column } from './columns.ts'

/** The part of a description that fixes the statistics' layout. */
export interface StatsSchema {
  columns: ReadonlyArray<Pick<ColumnDescription, 'name' | 'type' | 'categories' | 'shift'>>
  buckets: number
}

interface NumericSlot { column: number, name: string, at: number, shift: number }
interface CategoricalSlot { column: number, name: string, at: number, width: number }
interface TextSlot { column: number, name: string, at: number }

/** Offsets of each column's statistics in a partial-statistics vector. */
export class StatsLayout {
  readonly size: number
  readonly buckets: number
  readonly numeric: NumericSlot[] = []
  readonly categorical: CategoricalSlot[] = []
  readonly text: TextSlot[] = []

  constructor (schema: StatsSchema) {
    this.buckets = schema.buckets
    let at = 1
    schema.columns.forEach((c, column) => {
      if (c.type === 'numeric') {
        this.numeric.push({ column, name: c.name, at, shift: c.shift ?? 0 })
        at += 5
      } else if (c.type === 'categorical' || c.type === 'label') {
        const width = c.categories?.length ?? 0
        this.categorical.push({ column, name: c.name, at, width })
        at += width
      } else if (c.type === 'text') {
        this.text.push({ column, name: c.name, at })
        at += 1 + schema.buckets
      }
    })
    this.size = at
  }
}

/**
 * One cleaned row: per column of the description, a number (numeric), a
 * category index (categorical, label), a string (text) or null (ignored).
 */
export type CleanRow = ReadonlyArray<number | string | null>

/** Statistics of no rows: zero counts, min +∞, max −∞. */
export function emptyStats (layout: StatsLayout): Float64Array {
  const v = new Float64Array(layout.size)
  for (const s of layout.numeric) {
    v[s.at + 3] = Infinity
    v[s.at + 4] = -Infinity
  }
  return v
}

/** Adds rows to a partial-statistics vector, in place. */
export class StatsAccumulator {
  readonly layout: StatsLayout
  readonly vector: Float64Array
  private readonly seen: Uint8Array
  private readonly touched: number[] = []

  constructor (layout: StatsLayout) {
    this.layout = layout
    this.vector = emptyStats(layout)
    this.seen = new Uint8Array(layout.buckets)
  }

  add (row: CleanRow): void {
    const v = this.vector
    v[0] += 1
    for (const s of this.layout.numeric) {
      const x = row[s.column]
      if (typeof x !== 'number') continue
      const d = x - s.shift
      v[s.at] += 1
      v[s.at + 1] += d
      v[s.at + 2] += d * d
      if (x < v[s.at + 3]) v[s.at + 3] = x
      if (x > v[s.at + 4]) v[s.at + 4] = x
    }
    for (const s of this.layout.categorical) {
      const c = row[s.column]
      if (typeof c === 'number' && c >= 0 && c < s.width) v[s.at + c] += 1
    }
    for (const s of this.layout.text) {
      const t = row[s.column]
      if (typeof t !== 'string') continue
      v[s.at] += 1
      this.addDocument(t, s.at + 1)
    }
  }

  /**
   * Adds the first `length` rows of a shard writer's batch (arrow.ts; `source[k]` is stored column k's place
   * among the description's columns). The same numbers as `add` row by row: each sum sees the same additions
   * in the same order.
   */
  addBatch (source: readonly number[], columns: BatchColumns, length: number, documentFrequencies = true): void {
    const v = this.vector
    const of = (column: number): BatchColumns[number] | undefined => columns[source.indexOf(column)]
    v[0] += length
    for (const s of this.layout.numeric) {
      const x = of(s.column) as NumericArray | undefined
      if (x === undefined) continue
      let sum = v[s.at + 1]
      let sumsq = v[s.at + 2]
      let min = v[s.at + 3]
      let max = v[s.at + 4]
      for (let i = 0; i < length; i++) {
        const d = x[i] - s.shift
        sum += d
        sumsq += d * d
        if (x[i] < min) min = x[i]
        if (x[i] > max) max = x[i]
      }
      v[s.at] += length
      v[s.at + 1] = sum
      v[s.at + 2] = sumsq
      v[s.at + 3] = min
      v[s.at + 4] = max
    }
    for (const s of this.layout.categorical) {
      const c = of(s.column) as Int32Array | undefined
      if (c === undefined) continue
      for (let i = 0; i < length; i++) if (c[i] >= 0 && c[i] < s.width) v[s.at + c[i]] += 1
    }
    for (const s of this.layout.text) {
      const t = of(s.column) as Utf8Column | undefined
      if (t === undefined) continue
      v[s.at] += length
      // without: the caller counts them (text-df.ts) and adds them at s.at + 1
      if (documentFrequencies) for (let i = 0; i < length; i++) this.addDocumentBytes(t.data, t.offsets[i], t.offsets[i + 1], s.at + 1)
    }
  }

  private addDocumentBytes (bytes: Uint8Array, start: number, end: number, at: number): void {
    const { seen, touched } = this
    forEachNgramUtf8(bytes, start, end, this.layout.buckets, b => {
      if (seen[b] === 0) { seen[b] = 1; touched.push(b) }
    })
    for (const b of touched) { this.vector[at + b] += 1; seen[b] = 0 }
    touched.length = 0
  }

  private addDocument (text: string, at: number): void {
    const { seen, touched } = this
    forEachNgram(text, this.layout.buckets, b => {
      if (seen[b] === 0) { seen[b] = 1; touched.push(b) }
    })
    for (const b of touched) { this.vector[at + b] += 1; seen[b] = 0 }
    touched.length = 0
  }
}

/** The partial statistics of some rows (one shard's, typically). */
export function partialStats (layout: StatsLayout, rows: Iterable<CleanRow>): Float64Array {
  const acc = new StatsAccumulator(layout)
  for (const row of rows) acc.add(row)
  return acc.vector
}

/**
 * The partial statistics of a shard as read from its Arrow file (see arrow.ts):
 * the same numbers as `partialStats` over the rows that were written to it.
 */
export function partialStatsOfTable (layout: StatsLayout, schema: StatsSchema, table: Table): Float64Array {
  const acc = new StatsAccumulator(layout)
  const getters = schema.columns.map(c => c.type === 'ignored' ? null : table.getChild(c.name))
  const row = new Array<number | string | null>(schema.columns.length).fill(null)
  for (let i = 0; i < table.numRows; i++) {
    schema.columns.forEach((c, k) => {
      const vec = getters[k]
      if (vec === null || vec === undefined) { row[k] = null; return }
      if (c.type === 'numeric') row[k] = vec.get(i) as number
      else if (c.type === 'text') row[k] = vec.get(i) as string
      else row[k] = categoryIndex(vec, i)
    })
    acc.add(row)
  }
  return acc.vector
}

/** The dictionary index of row i of a dictionary-encoded Arrow column. */
function categoryIndex (vec: NonNullable<ReturnType<Table['getChild']>>, i: number): number {
  let at = i
  for (const data of vec.data) {
    if (at < data.length) return (data.values as Int32Array)[data.offset + at]
    at -= data.length
  }
  throw new RangeError(`row ${i} out of range`)
}

/** Merges two partial-statistics vectors (a new vector; the inputs are not changed). */
export function combineStats (layout: StatsLayout, a: Float64Array, b: Float64Array): Float64Array {
  if (a.length !== layout.size || b.length !== layout.size) throw new RangeError(`statistics vectors must have ${layout.size} elements`)
  const out = new Float64Array(layout.size)
  for (let i = 0; i < out.length; i++) out[i] = a[i] + b[i]
  for (const s of layout.numeric) {
    out[s.at + 3] = Math.min(a[s.at + 3], b[s.at + 3])
    out[s.at + 4] = Math.max(a[s.at + 4], b[s.at + 4])
  }
  return out
}

/** Folds partial statistics in the given order (shard order, for a result every peer reproduces exactly). */
export function combineAll (layout: StatsLayout, parts: Iterable<Float64Array>): Float64Array {
  let acc = emptyStats(layout)
  for (const p of parts) acc = combineStats(layout, acc, p)
  return acc
}

export interface NumericStats {
  n: number
  mean: number | null
  /** Population standard deviation. */
  std: number | null
  min: number | null
  max: number | null
}

export interface FinalStats {
  rows: number
  numeric: Record<string, NumericStats>
  categorical: Record<string, number[]>
  text: Record<string, { docs: number, df: Float64Array }>
}

/** Means, standard deviations, ranges, category counts and document frequencies from combined statistics. */
export function finalizeStats (layout: StatsLayout, v: Float64Array): FinalStats {
  const out: FinalStats = { rows: v[0], numeric: {}, categorical: {}, text: {} }
  for (const s of layout.numeric) {
    const n = v[s.at]
    const m = n > 0 ? v[s.at + 1] / n : null
    out.numeric[s.name] = {
      n,
      mean: m === null ? null : s.shift + m,
      std: m === null ? null : Math.sqrt(Math.max(0, v[s.at + 2] / n - m * m)),
      min: n > 0 ? v[s.at + 3] : null,
      max: n > 0 ? v[s.at + 4] : null
    }
  }
  for (const s of layout.categorical) out.categorical[s.name] = Array.from(v.subarray(s.at, s.at + s.width))
  for (const s of layout.text) out.text[s.name] = { docs: v[s.at], df: v.slice(s.at + 1, s.at + 1 + layout.buckets) }
  return out
}

/** Combined statistics as they are stored in the description (numbers only, no infinities). */
export function statsToDescription (layout: StatsLayout, v: Float64Array): StatsDescription {
  const fin = finalizeStats(layout, v)
  const out: StatsDescription = { rows: fin.rows, numeric: {}, categorical: fin.categorical, text: {} }
  for (const s of layout.numeric) {
    const f = fin.numeric[s.name]
    out.numeric[s.name] = { n: f.n, sum: v[s.at + 1], sumsq: v[s.at + 2], min: f.min, max: f.max, mean: f.mean, std: f.std }
  }
  for (const s of layout.text) out.text[s.name] = { docs: fin.text[s.name].docs, df: Array.from(fin.text[s.name].df) }
  return out
}

/** The combined vector back from its stored form. */
export function statsFromDescription (layout: StatsLayout, d: StatsDescription): Float64Array {
  const v = emptyStats(layout)
  v[0] = d.rows
  for (const s of layout.numeric) {
    const x = d.numeric[s.name]
    if (x === undefined) continue
    v[s.at] = x.n
    v[s.at + 1] = x.sum
    v[s.at + 2] = x.sumsq
    if (x.min !== null) v[s.at + 3] = x.min
    if (x.max !== null) v[s.at + 4] = x.max
  }
  for (const s of layout.categorical) {
    const counts = d.categorical[s.name] ?? []
    for (let i = 0; i < s.width; i++) v[s.at + i] = counts[i] ?? 0
  }
  for (const s of layout.text) {
    const t = d.text[s.name]
    if (t === undefined) continue
    v[s.at] = t.docs
    for (let b = 0; b < layout.buckets; b++) v[s.at + 1 + b] = t.df[b] ?? 0
  }
  return v
}

// ---- the ring all-reduce form ----

/** Float32 adds integers exactly only below this. */
const EXACT_INTEGER_LIMIT = 2 ** 24
/** A float64 spelled as four 16-bit limbs. */
const LIMBS = 4
/** Float statistics per numeric column per shard: sum, sum of squares, min, max. */
const FLOATS_PER_NUMERIC = 4

function isFloatSlot (layout: StatsLayout): Uint8Array {
  const f = new Uint8Array(layout.size)
  for (const s of layout.numeric) for (let k = 1; k <= 4; k++) f[s.at + k] = 1
  return f
}

/** Length of the ring vector for `shards` shards. */
export function ringVectorLength (layout: StatsLayout, shards: number): number {
  const floats = layout.numeric.length * FLOATS_PER_NUMERIC
  return (layout.size - floats) + shards * (1 + floats * LIMBS)
}

/**
 * This peer's contribution to the swarm-wide statistics: the partial
 * statistics of the shards it owns (index → `partialStats` of that shard),
 * laid out for a sum over peers (see the top of this file). Every peer must
 * use the same `shards` count.
 */
export function toRingVector (layout: StatsLayout, shards: number, parts: ReadonlyMap<number, Float64Array>): Float32Array {
  const floatSlot = isFloatSlot(layout)
  const countLength = layout.size - layout.numeric.length * FLOATS_PER_NUMERIC
  const slot = 1 + layout.numeric.length * FLOATS_PER_NUMERIC * LIMBS
  const out = new Float32Array(ringVectorLength(layout, shards))
  const counts = new Float64Array(countLength)
  const bits = new Float64Array(1)
  const limbs = new Uint16Array(bits.buffer)
  for (const [shard, v] of parts) {
    if (!Number.isInteger(shard) || shard < 0 || shard >= shards) throw new RangeError(`shard index ${shard} outside 0..${shards - 1}`)
    if (v.length !== layout.size) throw new RangeError(`statistics vectors must have ${layout.size} elements`)
    let c = 0
    for (let i = 0; i < v.length; i++) if (floatSlot[i] === 0) counts[c++] += v[i]
    const base = countLength + shard * slot
    out[base] = 1
    let at = base + 1
    for (const s of layout.numeric) {
      for (let k = 1; k <= FLOATS_PER_NUMERIC; k++) {
        bits[0] = v[s.at + k]
        for (let l = 0; l < LIMBS; l++) out[at++] = limbs[l]
      }
    }
  }
  for (let i = 0; i < countLength; i++) {
    if (!Number.isInteger(counts[i]) || counts[i] >= EXACT_INTEGER_LIMIT) throw new StatsCoverageError(`count ${counts[i]} at ${i} is not an integer below 2^24: float32 could not sum it exactly`)
    out[i] = counts[i]
  }
  return out
}

/**
 * The swarm-wide statistics from the ring's sum of every peer's `toRingVector`:
 * checks that each shard was counted exactly once, then folds the shards in
 * order. Equal, bit for bit, to `combineAll` over the shards' partial statistics.
 */
export function fromRingSum (layout: StatsLayout, shards: number, sum: Float32Array): Float64Array {
  if (sum.length !== ringVectorLength(layout, shards)) throw new RangeError(`ring vector must have ${ringVectorLength(layout, shards)} elements for ${shards} shards`)
  const floatSlot = isFloatSlot(layout)
  const countLength = layout.size - layout.numeric.length * FLOATS_PER_NUMERIC
  const slot = 1 + layout.numeric.length * FLOATS_PER_NUMERIC * LIMBS
  const missing: number[] = []
  const twice: number[] = []
  for (let s = 0; s < shards; s++) {
    const flag = sum[countLength + s * slot]
    if (flag === 0) missing.push(s)
    else if (flag !== 1) twice.push(s)
  }
  if (missing.length > 0 || twice.length > 0) {
    throw new StatsCoverageError(`each shard must be counted exactly once: ${missing.length > 0 ? `missing ${missing.join(', ')}` : ''}${missing.length > 0 && twice.length > 0 ? '; ' : ''}${twice.length > 0 ? `counted more than once ${twice.join(', ')}` : ''}`)
  }
  for (let i = 0; i < countLength; i++) {
    if (sum[i] >= EXACT_INTEGER_LIMIT) throw new StatsCoverageError(`count at ${i} reached 2^24: float32 cannot sum it exactly`)
  }
  // the integer part, then the per-shard float part folded in shard order
  const bits = new Float64Array(1)
  const limbs = new Uint16Array(bits.buffer)
  const result = emptyStats(layout)
  let c = 0
  for (let i = 0; i < layout.size; i++) if (floatSlot[i] === 0) result[i] = sum[c++]
  for (let s = 0; s < shards; s++) {
    const shard = emptyStats(layout)
    let at = countLength + s * slot + 1
    for (const n of layout.numeric) {
      for (let k = 1; k <= FLOATS_PER_NUMERIC; k++) {
        for (let l = 0; l < LIMBS; l++) limbs[l] = sum[at++]
        shard[n.at + k] = bits[0]
      }
    }
    for (const n of layout.numeric) {
      result[n.at + 1] += shard[n.at + 1]
      result[n.at + 2] += shard[n.at + 2]
      result[n.at + 3] = Math.min(result[n.at + 3], shard[n.at + 3])
      result[n.at + 4] = Math.max(result[n.at + 4], shard[n.at + 4])
    }
  }
  return result
}
