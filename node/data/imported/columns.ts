/**
 * The in-memory column layouts a shard's batch is built from (a leaf: the shard writer in arrow.ts and the
 * statistics in stats.ts both use them, and neither imports the other's values).
 */

/** A text column's rows as UTF-8: row i is `data[offsets[i], offsets[i + 1])` (Arrow's Utf8 layout). */
export interface Utf8Column {
  offsets: Int32Array
  data: Uint8Array
}

/** A numeric column as stored: float64, or narrower integers (`storage`). */
export type NumericArray = Float64Array | Uint8Array | Uint16Array | Int32Array

/** One buffered batch of a shard, indexed like the shard's stored columns. */
export type BatchColumns = Array<NumericArray | Int32Array | Utf8Column>
