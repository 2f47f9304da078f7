/**
 * Data sets a job can name, with a fixed, seeded train/test split, and batches
 * drawn in a seeded order per epoch so that a restarted peer resumes exactly
 * where it stopped.
 */
import { join } from 'node:path'
import { DATASETS_DIR, isDatasetId, loadImportedDataset } from './imported/index.ts'
import { loadSpamText } from './lm.ts'
import { loadMnistExamples } from './mnist.ts'
import { mixSeed, permutation } from './random.ts'
import { SPAM_CLASSES, countNgrams, documentFrequencies, loadSpamCorpus, spamExamples } from './spam.ts'
import { idfWeights } from './text.ts'

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
  train: Examples
  test: Examples
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
}

/** Imported data sets loaded by this process, by directory (a data set never changes: its id is its content). */
const importedCache = new Map<string, Dataset>()

/**
 * A data set by name: `mnist`, `spam`, or an imported data set's id (`ds-…`),
 * read from `options.dataDir` (see node/data/imported).
 */
export function loadDataset (name: string, options: LoadOptions = {}): Dataset {
  if (isDatasetId(name)) {
    if (options.dataDir === undefined) throw new UnknownDatasetError(`data set ${name} is an imported one: loading it needs the data dir that holds it`)
    const dir = join(options.dataDir, DATASETS_DIR, name)
    let dataset = importedCache.get(dir)
    if (dataset === undefined) {
      dataset = loadImportedDataset(dir, name)
      importedCache.set(dir, dataset)
    }
    return dataset
  }
  switch (name) {
    case 'mnist': {
      const all = loadMnistExamples()
      const { train, test } = split(all, TEST_FRACTION, SPLIT_SEED)
      return { name, inputShape: [28, 28, 1], features: all.features, classes: 10, train, test }
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
  spamCache = { name: 'spam', inputShape: [counts.buckets], features: counts.buckets, classes: SPAM_CLASSES.length, train, test }
  return spamCache
}
