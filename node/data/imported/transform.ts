/**
 * From cleaned columns to feature rows, the same way on every peer.
 *
 * A feature row is the description's feature columns in order, each taking:
 * - numeric: 1 value, normalised with the training shards' statistics:
 *   zscore `(x − mean) / std` (std 0 → `x − mean`), minmax
 *   `(x − min) / (max − min)` (a constant column → 0), or none (x as is);
 * - categorical: a one-hot block, one position per category (index order);
 * - text: a block of `buckets` hashed unigram+bigram features,
 *   `log(1 + tf) · idf` with the training shards' document frequencies,
 *   unit L2 norm (see ../text.ts).
 * The label becomes its class index (the position of its value in `classes`).
 */
import type { Table } from 'apache-arrow'
import type { Examples } from '../types.ts'
import { NgramCounter, idfWeights, writeTextFeatures } from '../text.ts'
import { dictionaryIndices, float64Values } from './arrow.ts'
import { columnWidth } from './description.ts'
import type { DatasetDescription } from './description.ts'

interface Block {
  name: string
  type: 'numeric' | 'categorical' | 'text'
  offset: number
  /** numeric: x → a·x + b */
  scale: number
  bias: number
  idf: Float32Array | null
}

/** The feature layout of a data set: where each column's block starts, and its normaliser. */
export class FeatureTransform {
  readonly features: number
  readonly buckets: number
  readonly label: string
  private readonly blocks: Block[] = []

  constructor (d: DatasetDescription) {
    this.buckets = d.transform.buckets
    this.label = d.label
    let offset = 0
    for (const c of d.columns) {
      if (c.type !== 'numeric' && c.type !== 'categorical' && c.type !== 'text') continue
      const block: Block = { name: c.name, type: c.type, offset, scale: 1, bias: 0, idf: null }
      if (c.type === 'numeric') {
        const s = d.stats.numeric[c.name]
        if (d.transform.normalize === 'zscore' && s !== undefined && s.mean !== null) {
          const std = s.std !== null && s.std > 0 ? s.std : 1
          block.scale = 1 / std
          block.bias = -s.mean / std
        } else if (d.transform.normalize === 'minmax' && s !== undefined && s.min !== null && s.max !== null) {
          const range = s.max - s.min
          block.scale = range > 0 ? 1 / range : 0
          block.bias = range > 0 ? -s.min / range : 0
        }
      } else if (c.type === 'text') {
        const t = d.stats.text[c.name]
        block.idf = t !== undefined ? idfWeights(t.df, t.docs) : null
      }
      this.blocks.push(block)
      offset += columnWidth(c, d.transform.buckets)
    }
    this.features = offset
  }

  /** The rows of one shard as features and class indices (the features written into `into` when given: a reused buffer). */
  examples (table: Table, into?: Float32Array): Examples {
    const n = table.numRows
    const f = this.features
    if (into !== undefined && into.length < n * f) throw new RangeError(`${n} rows of ${f} features do not fit in ${into.length} floats`)
    const x = into !== undefined ? into.subarray(0, n * f).fill(0) : new Float32Array(n * f)
    const labels = table.getChild(this.label)
    if (labels === null) throw new TypeError(`shard has no label column "${this.label}"`)
    const y = Uint8Array.from(dictionaryIndices(labels))
    for (const b of this.blocks) {
      const vec = table.getChild(b.name)
      if (vec === null) throw new TypeError(`shard has no column "${b.name}"`)
      if (b.type === 'numeric') {
        const values = float64Values(vec)
        for (let i = 0; i < n; i++) x[i * f + b.offset] = values[i] * b.scale + b.bias
      } else if (b.type === 'categorical') {
        const idx = dictionaryIndices(vec)
        for (let i = 0; i < n; i++) if (idx[i] >= 0) x[i * f + b.offset + idx[i]] = 1
      } else {
        const counter = new NgramCounter(this.buckets)
        let i = 0
        for (const text of vec as Iterable<string>) {
          writeTextFeatures(counter, text, b.idf, x, i * f + b.offset)
          i++
        }
      }
    }
    return { x, y, n, features: f }
  }
}
