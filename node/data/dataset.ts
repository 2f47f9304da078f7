/**
 * Data sets a job can name, with a fixed, seeded train/test split, and readers
 * of the rows the swarm's data position draws (node/data/epoch.ts: every row
 * once an epoch, a restarted peer going on where the swarm is).
 *
 * Built-in data sets live in memory. An imported data set's training rows are
 * read from its shard files a block at a time (node/data/stream), so that a
 * peer's memory does not grow with the data set; its test split is a bounded,
 * evenly spread sample of the test shard.
 */
import { join } from 'node:path'
import { DATASETS_DIR, isDatasetId, missingShards, readDescription } from './imported/index.ts'
import { IncompleteDatasetError } from './imported/errors.ts'
import { loadSpamText } from './lm.ts'
import { loadMnistExamples } from './mnist.ts'
import { permutation } from './random.ts'
import { SPAM_CLASSES, countNgrams, documentFrequencies, loadSpamCorpus, spamExamples } from './spam.ts'
import { idfWeights } from './text.ts'
import { StreamedRows } from './stream/streamed.ts'
import { loadTestSample } from './stream/test-split.ts'
import { MemoryRows } from './memory.ts'
import type { Dataset, Examples } from './types.ts'

export type { Batch, BatchReader, Dataset, Examples, TrainingRows } from './types.ts'
export { MemoryRows, gatherBatch } from './memory.ts'

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
