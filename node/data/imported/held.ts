/**
 * The kept rows' values, held in memory from the duplicates' pass to the write (duckdb.ts): where they fit, that
 * pass copies each kept row's numbers, category codes and text out of DuckDB's result chunks as it finds the row
 * to be the first of its kind, and the shards are written from here, with no further scan of src. Each column is
 * one array over the kept rows, in file order, filled once (its size is known before the pass: an upper bound).
 */
import type { Utf8Column } from './columns.ts'

export class HeldRows {
  /** Numeric column j's values, NaN where missing. */
  readonly numbers: Float64Array[]
  /** Coded column j's category codes (the engine's own order of the values), -1 where missing. */
  readonly codes: Int32Array[]
  /** Text column j's UTF-8 bytes (Arrow's layout, offsets from the start of `data`). */
  readonly texts: Utf8Column[]
  rows = 0

  /** Room for `rows` rows, and `textBytes[j]` bytes of text column j (more is made where that is short). */
  constructor (rows: number, numbers: number, codes: number, textBytes: readonly number[]) {
    this.numbers = Array.from({ length: numbers }, () => new Float64Array(rows))
    this.codes = Array.from({ length: codes }, () => new Int32Array(rows))
    this.texts = textBytes.map(bytes => ({ offsets: new Int32Array(rows + 1), data: new Uint8Array(bytes) }))
  }

  /** Bytes these arrays take for `rows` rows and that much text. */
  static bytes (rows: number, numbers: number, codes: number, textBytes: readonly number[]): number {
    return rows * (8 * numbers + 4 * codes + 4 * textBytes.length) + textBytes.reduce((a, b) => a + b, 0)
  }

  /** Appends the rows `select[0, taken)` of a result chunk's columns (each column in the order of the constructor's). */
  take (numbers: readonly Float64Array[], codes: readonly Int32Array[], texts: readonly Utf8Column[], select: Uint32Array, taken: number): void {
    const at = this.rows
    for (let j = 0; j < numbers.length; j++) {
      const from = numbers[j]
      const to = this.numbers[j]
      for (let k = 0; k < taken; k++) to[at + k] = from[select[k]]
    }
    for (let j = 0; j < codes.length; j++) {
      const from = codes[j]
      const to = this.codes[j]
      for (let k = 0; k < taken; k++) to[at + k] = from[select[k]]
    }
    for (let j = 0; j < texts.length; j++) {
      const { offsets, data } = texts[j]
      const to = this.texts[j]
      let end = to.offsets[at]
      let more = 0
      for (let k = 0; k < taken; k++) more += offsets[select[k] + 1] - offsets[select[k]]
      if (end + more > to.data.length) {
        const grown = new Uint8Array(Math.max(end + more, 2 * to.data.length))
        grown.set(to.data.subarray(0, end))
        to.data = grown
      }
      // a run of rows next to each other in the chunk at once (most are: a duplicate is rare)
      const out = to.data
      const outOffsets = to.offsets
      let k = 0
      while (k < taken) {
        let e = k + 1
        while (e < taken && select[e] === select[e - 1] + 1) e++
        const a = offsets[select[k]]
        const b = offsets[select[e - 1] + 1]
        out.set(data.subarray(a, b), end)
        for (; k < e; k++) outOffsets[at + k + 1] = end + offsets[select[k] + 1] - a
        end += b - a
      }
    }
    this.rows += taken
  }
}
