/**
 * Data sets a job can name, with a fixed, seeded train/test split, and batches
 * drawn in a seeded order per epoch so that a restarted peer resumes exactly
 * where it stopped.
 */
import { loadMnistExamples } from './mnist.ts'
import { mixSeed, permutation } from './random.ts'

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

export const DATASETS = ['mnist'] as const
export type DatasetName = typeof DATASETS[number]

/** The split never depends on the job's seed, so every job is evaluated on the same held-out rows. */
const SPLIT_SEED = 0x5eed
/** Fraction of the rows held out for evaluation. */
const TEST_FRACTION = 0.15

export class UnknownDatasetError extends Error {
  override name = 'UnknownDatasetError'
}

export function loadDataset (name: string): Dataset {
  switch (name) {
    case 'mnist': {
      const all = loadMnistExamples()
      const { train, test } = split(all, TEST_FRACTION, SPLIT_SEED)
      return { name, inputShape: [28, 28, 1], features: all.features, classes: 10, train, test }
    }
    default:
      throw new UnknownDatasetError(`unknown dataset "${name}" (known: ${DATASETS.join(', ')})`)
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
