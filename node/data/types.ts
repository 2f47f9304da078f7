/**
 * The shapes data takes between a file and a batch: examples in memory, a
 * data set, its training rows and their batches. A leaf of types, so that the
 * loaders (dataset.ts, imported/, stream/) and the trainer share them without
 * importing each other.
 */
import type { RowSet } from './stream/rows.ts'

/** Dense examples: `n` rows of `features` floats, and a class label per row. */
export interface Examples {
  x: Float32Array
  y: Uint8Array
  n: number
  features: number
}

export interface Dataset {
  name: string
  /** Shape of one example as the model sees it (flat features are reshaped by the model). */
  inputShape: number[]
  features: number
  classes: number
  train: TrainingRows
  test: Examples
}

/** One batch: features, one-hot labels, and which training rows they are. */
export interface Batch {
  x: Float32Array
  y: Float32Array
  n: number
  rows: Uint32Array
}

/** A data set's training rows, in memory or on disk. */
export interface TrainingRows {
  readonly n: number
  readonly features: number
  /** The rows themselves when they are in memory (built-in data sets); null when they are read from shard files. */
  readonly examples: Examples | null
  /** A reader of batches in the seeded order of each pass (see BatchReader). */
  batches: (seed: number, classes: number) => BatchReader
}

/**
 * Batches of passes over sets of rows. Pass `pass` over a set visits every row
 * of it exactly once, in an order fixed by the seed, the pass and the set.
 */
export interface BatchReader {
  /** The rows at positions `[cursor, cursor + size)` of pass `pass` over `rows` (fewer at the pass's end). */
  read: (rows: RowSet, pass: number, cursor: number, size: number) => Promise<Batch>
  close: () => Promise<void>
}
