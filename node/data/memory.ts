/**
 * Training rows held in memory (the built-in data sets): seeded orders per
 * pass and batches copied out of the rows.
 */
import { mixSeed, permutation } from './random.ts'
import type { BatchReader, Examples, TrainingRows } from './types.ts'
import type { RowSet } from './stream/rows.ts'

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
