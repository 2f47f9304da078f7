/**
 * Text to vectors: hashed word n-grams ("the hashing trick").
 *
 * A document is lower-cased and cut into words (runs of Unicode letters and
 * digits, so "naïve café" gives two words and punctuation separates them).
 * Every word (unigram) and every pair of adjacent words (bigram) is hashed
 * (32-bit FNV-1a over UTF-16 code units, bigrams mixed from their two word
 * hashes) into one of `buckets` buckets, a power of two. A bucket's value is
 * `log(1 + tf) · idf`, where tf is how often the document's n-grams fell into
 * it and idf = ln((1 + N) / (1 + df)) + 1 is the smoothed inverse document
 * frequency over the N training documents (df: how many of them touch the
 * bucket), the same formula as scikit-learn's `TfidfTransformer(smooth_idf)`.
 * The document's vector is then scaled to unit L2 norm, so long and short
 * e-mails weigh alike. With no idf (all ones) it is plain log term frequency.
 *
 * Why hashing and not a vocabulary: the mapping needs no state, so every peer
 * computes the same features from the text alone, a shard can be transformed
 * without seeing the others, and memory does not grow with the vocabulary.
 * Collisions cost a little accuracy; 2^12..2^14 buckets keep them rare enough
 * for spam filtering.
 *
 * Bounds: a document is cut at MAX_TEXT_CHARS, and words longer than
 * MAX_WORD_CHARS (base64 blobs, hex digests) are skipped and break the bigram
 * chain, so an e-mail with a large attachment costs no more than a letter.
 */

/** Documents are cut here: enough for any letter, and it bounds the work per row. */
export const MAX_TEXT_CHARS = 100_000
/** Longer "words" are encoded blobs, not language. */
export const MAX_WORD_CHARS = 32
/** Allowed bucket counts: 2^8 .. 2^16. */
export const MIN_BUCKETS = 1 << 8
export const MAX_BUCKETS = 1 << 16

export interface TextSpec {
  /** Number of hash buckets, a power of two. */
  buckets: number
}

export function isValidBucketCount (n: number): boolean {
  return Number.isInteger(n) && n >= MIN_BUCKETS && n <= MAX_BUCKETS && (n & (n - 1)) === 0
}

const WORD = /[\p{L}\p{N}]+/gu
const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

function fnv1a (s: string): number {
  let h = FNV_OFFSET
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

/** Mixes two word hashes into a bigram hash (murmur3's finaliser over an ordered combination). */
function mixPair (a: number, b: number): number {
  let h = (Math.imul(a, 0x9e3779b1) ^ b) >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Calls `visit(bucket)` once per n-gram of `text` (unigrams and bigrams), in
 * order. The same text gives the same calls on every machine.
 */
export function forEachNgram (text: string, buckets: number, visit: (bucket: number) => void): void {
  const mask = buckets - 1
  const doc = (text.length > MAX_TEXT_CHARS ? text.slice(0, MAX_TEXT_CHARS) : text).toLowerCase()
  let prev = -1
  WORD.lastIndex = 0
  for (let m = WORD.exec(doc); m !== null; m = WORD.exec(doc)) {
    const word = m[0]
    if (word.length > MAX_WORD_CHARS) {
      prev = -1
      continue
    }
    const h = fnv1a(word)
    visit(h & mask)
    if (prev !== -1) visit(mixPair(prev, h) & mask)
    prev = h
  }
}

const utf8 = new TextDecoder()

/**
 * `forEachNgram` of the text whose UTF-8 bytes are `bytes[start, end)`, with
 * the same calls. An ASCII document is cut into words and hashed on its bytes
 * (in ASCII, a letter or digit is [A-Za-z0-9], lower case is +32, and a byte
 * is a UTF-16 code unit), without making a string; any other is decoded and
 * given to `forEachNgram`.
 */
export function forEachNgramUtf8 (bytes: Uint8Array, start: number, end: number, buckets: number, visit: (bucket: number) => void): void {
  const stop = Math.min(end, start + MAX_TEXT_CHARS)
  for (let i = start; i < end; i++) {
    if (bytes[i] >= 0x80) {
      forEachNgram(utf8.decode(bytes.subarray(start, end)), buckets, visit)
      return
    }
  }
  const mask = buckets - 1
  let prev = -1
  let i = start
  while (i < stop) {
    let c = bytes[i]
    if (!isAsciiWordByte(c)) { i++; continue }
    const from = i
    let h = FNV_OFFSET
    while (i < stop && isAsciiWordByte(c = bytes[i])) {
      h = Math.imul(h ^ (c >= 0x41 && c <= 0x5a ? c + 32 : c), FNV_PRIME)
      i++
    }
    if (i - from > MAX_WORD_CHARS) {
      prev = -1
      continue
    }
    h = h >>> 0
    visit(h & mask)
    if (prev !== -1) visit(mixPair(prev, h) & mask)
    prev = h
  }
}

/** Per byte: its lower-case form where it is an ASCII letter or digit, else 0. */
const ASCII_WORD = Uint8Array.from({ length: 256 }, (_, c) => isAsciiWordByte(c) ? (c >= 0x41 && c <= 0x5a ? c + 32 : c) : 0)

/**
 * The distinct buckets of `forEachNgramUtf8`'s calls for `bytes[start, end)`, written to `touched` (room for
 * `buckets` of them) and counted in the return value; `seen` (a byte per bucket, all 0) marks them and is left
 * marked: the caller clears those it is given. The same hashing, without a call per n-gram and in one pass over an ASCII document (where a byte
 * of 0x80 or more turns up, what was marked is cleared and the document is decoded, as forEachNgramUtf8 does).
 */
export function distinctNgramsUtf8 (bytes: Uint8Array, start: number, end: number, buckets: number, seen: Uint8Array, touched: Int32Array): number {
  const stop = Math.min(end, start + MAX_TEXT_CHARS)
  const mask = buckets - 1
  let n = 0
  let prev = -1
  let i = start
  ascii: {
    while (i < stop) {
      let c = bytes[i]
      if (c >= 0x80) break ascii
      let w = ASCII_WORD[c]
      if (w === 0) { i++; continue }
      const from = i
      let h = FNV_OFFSET
      while (w !== 0) {
        h = Math.imul(h ^ w, FNV_PRIME)
        if (++i >= stop) break
        c = bytes[i]
        w = ASCII_WORD[c]
      }
      if (c >= 0x80 && i < stop) break ascii
      if (i - from > MAX_WORD_CHARS) {
        prev = -1
        continue
      }
      h = h >>> 0
      let b = h & mask
      if (seen[b] === 0) { seen[b] = 1; touched[n++] = b }
      if (prev !== -1) {
        b = mixPair(prev, h) & mask
        if (seen[b] === 0) { seen[b] = 1; touched[n++] = b }
      }
      prev = h
    }
    for (let j = stop; j < end; j++) if (bytes[j] >= 0x80) break ascii
    return n
  }
  for (let t = 0; t < n; t++) seen[touched[t]] = 0
  n = 0
  forEachNgram(utf8.decode(bytes.subarray(start, end)), buckets, b => {
    if (seen[b] === 0) { seen[b] = 1; touched[n++] = b }
  })
  return n
}

function isAsciiWordByte (c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)
}

/**
 * Term counts of one document into a scratch vector; returns the buckets
 * touched (each once). The caller zeroes them again after use.
 */
export class NgramCounter {
  readonly buckets: number
  readonly counts: Float64Array
  private readonly touched: Uint32Array
  private n = 0

  constructor (buckets: number) {
    this.buckets = buckets
    this.counts = new Float64Array(buckets)
    this.touched = new Uint32Array(buckets)
  }

  /** Counts `text`'s n-grams; returns how many distinct buckets it touched (see `touchedBuckets`). */
  count (text: string): number {
    this.reset()
    forEachNgram(text, this.buckets, b => {
      if (this.counts[b] === 0) this.touched[this.n++] = b
      this.counts[b] += 1
    })
    return this.n
  }

  /** The buckets the last `count` touched, in first-touch order. */
  touchedBuckets (): Uint32Array {
    return this.touched.subarray(0, this.n)
  }

  private reset (): void {
    for (let i = 0; i < this.n; i++) this.counts[this.touched[i]] = 0
    this.n = 0
  }
}

/** Smoothed inverse document frequency per bucket from document frequencies over `docs` documents. */
export function idfWeights (df: ArrayLike<number>, docs: number): Float32Array {
  const idf = new Float32Array(df.length)
  for (let i = 0; i < df.length; i++) idf[i] = Math.log((1 + docs) / (1 + df[i])) + 1
  return idf
}

/**
 * Writes the document's vector (`log(1 + tf) · idf`, unit L2 norm) into
 * `out[offset .. offset + buckets)`, which must be zero there. An empty
 * document stays all zeros.
 */
export function writeTextFeatures (counter: NgramCounter, text: string, idf: Float32Array | null, out: Float32Array, offset: number): void {
  const n = counter.count(text)
  const touched = counter.touchedBuckets()
  let norm = 0
  for (let i = 0; i < n; i++) {
    const b = touched[i]
    const v = Math.log1p(counter.counts[b]) * (idf === null ? 1 : idf[b])
    out[offset + b] = v
    norm += v * v
  }
  if (norm === 0) return
  const scale = 1 / Math.sqrt(norm)
  for (let i = 0; i < n; i++) out[offset + touched[i]] *= scale
}
