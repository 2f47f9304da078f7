/**
 * The document-frequency counter's one-pass hashing (distinctNgramsUtf8) touches exactly the buckets that
 * forEachNgramUtf8 calls, in the order it first calls them, whatever the text: ASCII or not (early, late,
 * beyond the cut), long words, separators only, documents longer than MAX_TEXT_CHARS.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_TEXT_CHARS, MAX_WORD_CHARS, distinctNgramsUtf8, forEachNgramUtf8 } from '../node/data/text.ts'

function reference (bytes: Uint8Array, start: number, end: number, buckets: number): number[] {
  const seen = new Set<number>()
  const out: number[] = []
  forEachNgramUtf8(bytes, start, end, buckets, b => {
    if (!seen.has(b)) { seen.add(b); out.push(b) }
  })
  return out
}

test('distinctNgramsUtf8 touches forEachNgramUtf8\'s distinct buckets, in its order, and leaves seen marked only there', () => {
  let state = 12345
  const rand = (n: number): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    return state % n
  }
  const pieces = ['a', 'Z', '9', ' ', ',', '-', '\n', 'é', 'ü', '日本', '😀', 'x'.repeat(MAX_WORD_CHARS), 'y'.repeat(MAX_WORD_CHARS + 1), 'Hello', 'WORLD', 'naïve']
  const texts = [
    '', ' ', ',,,', 'a', 'The quick brown fox', 'Zürich café', 'x'.repeat(MAX_WORD_CHARS + 5) + ' a b',
    'a '.repeat(MAX_TEXT_CHARS), 'ab '.repeat(MAX_TEXT_CHARS / 3) + 'é', 'a'.repeat(MAX_TEXT_CHARS - 2) + ' bc de'
  ]
  const ascii = pieces.filter(p => /^[\x00-\x7f]*$/.test(p))
  for (let k = 0; k < 600; k++) {
    // half of them ASCII only (hashed on the bytes), half with any piece (mostly decoded)
    const from = k % 2 === 0 ? ascii : pieces
    const parts: string[] = []
    const n = rand(40)
    for (let j = 0; j < n; j++) parts.push(from[rand(from.length)])
    texts.push(parts.join(rand(2) === 0 ? ' ' : ''))
  }
  const encoder = new TextEncoder()
  for (const buckets of [256, 4096]) {
    const seen = new Uint8Array(buckets)
    const touched = new Int32Array(buckets)
    for (const text of texts) {
      // inside a larger buffer, as a batch's text is
      const body = encoder.encode(text)
      const bytes = new Uint8Array(body.length + 6)
      bytes.set(encoder.encode('é.'), 0)
      bytes.set(body, 3)
      bytes.set(encoder.encode('ü'), body.length + 3)
      const n = distinctNgramsUtf8(bytes, 3, 3 + body.length, buckets, seen, touched)
      assert.deepEqual([...touched.subarray(0, n)], reference(bytes, 3, 3 + body.length, buckets), JSON.stringify(text.slice(0, 60)))
      assert.equal(seen.reduce((a, b) => a + b, 0), n)
      for (let t = 0; t < n; t++) seen[touched[t]] = 0
    }
  }
})
