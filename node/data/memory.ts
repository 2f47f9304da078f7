/**
 * Training rows held in memory (the built-in data sets): seeded orders and
 * batches copied out of the rows.
 */
import type { BatchReader, Examples, TrainingRows } from './types.ts'
import { blockRowsFor } from './stream/order.ts'

/** Training rows in memory: a batch is copied out of them; every block is at hand, so a member draws from all of its own. */
export class MemoryRows implements TrainingRows {
  readonly examples: Examples
  readonly blockRows: number
  readonly windowBlocks = Number.POSITIVE_INFINITY

  constructor (examples: Examples) {
    this.examples = examples
    this.blockRows = blockRowsFor(examples.features)
  }

  get n (): number { return this.examples.n }
  get features (): number { return this.examples.features }

  batches (classes: number): BatchReader {
    const from = this.examples
    return {
      read: async rows => ({ ...gatherBatch(from, rows, 0, rows.length, classes), rows: rows.slice() }),
      prefetch: () => {},
      close: async () => {}
    }
  }
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
