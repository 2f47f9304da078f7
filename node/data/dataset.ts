/**
 * Data sets a job can name, with a fixed, seeded train/test split, and batches
 * drawn in a seeded order per pass so that a restarted peer resumes exactly
 * where it stopped.
 *
 * Built-in data sets live in memory. An imported data set's training rows are
 * read from its shard files a window at a time (node/data/stream), so that a
 * peer's memory does not grow with the data set; its test split is a bounded,
 * evenly spread sample of the test shard.
 */
import { join } from 'node:path'
import { DATASETS_DIR, isDatasetId, missingShards, readDescription } from './imported/index.ts'
import { IncompleteDatasetError } from './imported/errors.ts'
import { loadSpamText } from './lm.ts'
import { loadMnistExamples } from './mnist.ts'
import { mixSeed, permutation } from './random.ts'
import { SPAM_CLASSES, countNgrams, documentFrequencies, loadSpamCorpus, spamExamples } from './spam.ts'
import { idfWeights } from './text.ts'
import { StreamedRows } from './stream/streamed.ts'
import { loadTestSample } from './stream/test-split.ts'
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

/** Training rows in memory: a pass is a seeded permutation of the whole set. */
export class MemoryRows implements TrainingRows {
  readonly examples: Examples

  constructor (examples: Examples) {
    this.examples = examples
  }

  get n (): number { return this.examples.n }
  get features (): number { return this.examples.features }

  batches (seed: number, classes: number): BatchReader {
    const from = this.examples
    let cached: { rows: RowSet, pass: number, order: Uint32Array } | null = null
    return {
      read: async (rows, pass, cursor, size) => {
        if (cached === null || cached.pass !== pass || !cached.rows.equals(rows)) {
          const all = rows.toArray()
          cached = { rows, pass, order: epochOrder(all.length, seed, pass).map(i => all[i]) }
        }
        const b = gatherBatch(from, cached.order, cursor, size, classes)
        return { ...b, rows: cached.order.slice(cursor, cursor + b.n) }
      },
      close: async () => {}
    }
  }
}

export const DATASETS = ['mnist', 'spam', 'spam-text'] as const
export type DatasetName = typeof DATASETS[number]

/** The split never depends on the job's seed, so every job is evaluated on the same held-out rows. */
const SPLIT_SEED = 0x5eed
/** Fraction of the rows held out for evaluation. */
const TEST_FRACTION = 0.15

export class UnknownDatasetError extends Error {
  override name = 'UnknownDatasetError'
}

export interface LoadOptions {
  /** Where imported data sets live (`<dataDir>/datasets/<id>/`); needed for an imported data set's id. */
  dataDir?: string
  /**
   * Imported data sets: makes a training shard's file present (fetches it), called before a batch reads a shard
   * that is not on disk (`shardId`: `s0000`…, as the manifest names shards). With it, loading needs only the
   * description and the test shard; without it, every shard must be here (IncompleteDatasetError).
   */
  ensureShard?: (shardId: string) => Promise<void>
}

/** Test samples of imported data sets loaded by this process, by directory (a data set never changes: its id is its content). */
const testCache = new Map<string, Examples>()

/**
 * A data set by name: `mnist`, `spam`, or an imported data set's id (`ds-…`),
 * read from `options.dataDir` (see node/data/imported).
 */
export function loadDataset (name: string, options: LoadOptions = {}): Dataset {
  if (isDatasetId(name)) {
    if (options.dataDir === undefined) throw new UnknownDatasetError(`data set ${name} is an imported one: loading it needs the data dir that holds it`)
    const dir = join(options.dataDir, DATASETS_DIR, name)
    const d = readDescription(dir, name)
    const missing = missingShards(dir, d).filter(s => options.ensureShard === undefined || s === d.test)
    if (missing.length > 0) throw new IncompleteDatasetError(`data set ${name}: ${missing.length} of ${d.shards.length + 1} shards are not in ${dir} yet: fetch them from a peer that has them`, missing.map(s => s.sha256))
    let test = testCache.get(dir)
    if (test === undefined) {
      test = loadTestSample(dir, d)
      testCache.set(dir, test)
    }
    const train = new StreamedRows({ dir, description: d, ensureShard: options.ensureShard })
    return { name, inputShape: [d.features], features: d.features, classes: d.classes.length, train, test }
  }
  switch (name) {
    case 'mnist': {
      const all = loadMnistExamples()
      const { train, test } = split(all, TEST_FRACTION, SPLIT_SEED)
      return { name, inputShape: [28, 28, 1], features: all.features, classes: 10, train: new MemoryRows(train), test }
    }
    case 'spam':
      return loadSpam()
    case 'spam-text':
      return loadSpamText()
    default:
      throw new UnknownDatasetError(`unknown dataset "${name}" (known: ${DATASETS.join(', ')}, or an imported data set's id)`)
  }
}

/** Splits rows into train and test with a seeded shuffle. */
export function split (all: Examples, testFraction: number, seed: number): { train: Examples, test: Examples } {
  const order = permutation(all.n, seed)
  const nTest = Math.round(all.n * testFraction)
  return {
    test: take(all, order.subarray(0, nTest)),
    train: take(all, order.subarray(nTest))
  }
}

/** The rows of `from` at `rows`, copied, in that order. */
export function take (from: Examples, rows: ArrayLike<number>): Examples {
  const f = from.features
  const x = new Float32Array(rows.length * f)
  const y = new Uint8Array(rows.length)
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]
    x.set(from.x.subarray(r * f, (r + 1) * f), i * f)
    y[i] = from.y[r]
  }
  return { x, y, n: rows.length, features: f }
}

/** The order in which epoch `epoch` visits `n` rows: the same on every run for the same seed. */
export function epochOrder (n: number, seed: number, epoch: number): Uint32Array {
  return permutation(n, mixSeed(seed, epoch))
}

/** Copies the rows `order[start..start+size)` into one batch (features and one-hot labels). */
export function gatherBatch (from: Examples, order: ArrayLike<number>, start: number, size: number, classes: number): { x: Float32Array, y: Float32Array, n: number } {
  const end = Math.min(start + size, order.length)
  const n = end - start
  const f = from.features
  const x = new Float32Array(n * f)
  const y = new Float32Array(n * classes)
  for (let i = 0; i < n; i++) {
    const r = order[start + i]
    x.set(from.x.subarray(r * f, (r + 1) * f), i * f)
    y[i * classes + from.y[r]] = 1
  }
  return { x, y, n }
}

/** Built once per process: reading and hashing the corpus takes about a second. */
let spamCache: Dataset | undefined

function loadSpam (): Dataset {
  if (spamCache !== undefined) return spamCache
  const corpus = loadSpamCorpus()
  const n = corpus.texts.length
  // the rows split() picks; features are written straight into train and test (no full copy), and the
  // document frequencies come from the training rows only
  const order = permutation(n, SPLIT_SEED)
  const nTest = Math.round(n * TEST_FRACTION)
  const testRows = order.subarray(0, nTest)
  const trainRows = order.subarray(nTest)
  const counts = countNgrams(corpus.texts)
  const idf = idfWeights(documentFrequencies(counts, trainRows), trainRows.length)
  const train = spamExamples(counts, corpus.labels, trainRows, idf)
  const test = spamExamples(counts, corpus.labels, testRows, idf)
  spamCache = { name: 'spam', inputShape: [counts.buckets], features: counts.buckets, classes: SPAM_CLASSES.length, train: new MemoryRows(train), test }
  return spamCache
}
