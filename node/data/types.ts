/**
 * The shapes data takes between a file and a batch: examples in memory, a
 * data set, its training rows and their batches. A leaf of types, so that the
 * loaders (dataset.ts, imported/, stream/) and the trainer share them without
 * importing each other.
 */
import type { Block } from './stream/order.ts'

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
  /** Rows per block: the swarm agrees on how much of each block it has trained (node/data/epoch.ts); blocks are read whole. */
  readonly blockRows: number
  /** Blocks a member draws its batches from at once: what a reader from files holds (all of them, in memory). */
  readonly windowBlocks: number
  /** Each shard's row count where the rows come in shards of their own (an imported data set's files). */
  readonly shardRows?: readonly number[]
  /** A reader of batches (see BatchReader). */
  batches: (classes: number) => BatchReader
}

/** Batches of given training rows, read from memory or from the shard files (a block at a time, with read-ahead). */
export interface BatchReader {
  /** The examples of these training rows, in this order. */
  read: (rows: Uint32Array) => Promise<Batch>
  /** The blocks the next reads will come from (asked after a read): a reader from files starts loading them, and drops any other block but the last read's. */
  prefetch: (blocks: readonly Block[]) => void
  close: () => Promise<void>
}
