/**
 * A set of training rows as sorted, disjoint ranges: the rows of the shards a
 * peer owns are a few contiguous ranges, so the set costs memory per range,
 * never per row.
 */

export type RowRange = readonly [start: number, end: number]

export class RowSet {
  /** Sorted, disjoint, non-empty `[start, end)` ranges, adjacent ones merged. */
  readonly ranges: readonly RowRange[]
  readonly size: number

  private constructor (ranges: RowRange[]) {
    this.ranges = ranges
    this.size = ranges.reduce((n, [s, e]) => n + e - s, 0)
  }

  static readonly empty = new RowSet([])

  /** Rows `0..n-1`. */
  static all (n: number): RowSet {
    return n > 0 ? new RowSet([[0, n]]) : RowSet.empty
  }

  /** Any ranges (unsorted, overlapping, empty ones allowed). */
  static fromRanges (ranges: Iterable<RowRange>): RowSet {
    const sorted = [...ranges].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0])
    const out: Array<[number, number]> = []
    for (const [s, e] of sorted) {
      const last = out[out.length - 1]
      if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e)
      else out.push([s, e])
    }
    return new RowSet(out)
  }

  /** Individual rows (any order, duplicates allowed). */
  static of (rows: ArrayLike<number>): RowSet {
    const sorted = Float64Array.from(rows).sort()
    const out: Array<[number, number]> = []
    for (const r of sorted) {
      const last = out[out.length - 1]
      if (last !== undefined && r <= last[1]) last[1] = Math.max(last[1], r + 1)
      else out.push([r, r + 1])
    }
    return new RowSet(out)
  }

  equals (other: RowSet): boolean {
    return other.ranges.length === this.ranges.length && other.ranges.every(([s, e], i) => s === this.ranges[i][0] && e === this.ranges[i][1])
  }

  has (row: number): boolean {
    let lo = 0
    let hi = this.ranges.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.ranges[mid][1] <= row) lo = mid + 1
      else hi = mid
    }
    return lo < this.ranges.length && this.ranges[lo][0] <= row
  }

  /** The rows, ascending (memory per row: for in-memory data sets only). */
  toArray (): Uint32Array {
    const out = new Uint32Array(this.size)
    let at = 0
    for (const [s, e] of this.ranges) for (let r = s; r < e; r++) out[at++] = r
    return out
  }
}
