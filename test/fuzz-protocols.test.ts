/**
 * Property tests for every decoder in protocols/ (the all-reduce frames have their own in ring-codec.test.ts):
 * random bytes, random JSON, mutated valid messages and valid messages with one field replaced by anything
 * never make a decoder throw anything but its named error (InvalidMessageError; InvalidJobError for jobs);
 * a message over the limit is refused from its length alone, before a byte of it is decoded or parsed; and
 * the stream readers in front of the decoders refuse a length prefix over the limit before buffering the frame.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Stream } from '@libp2p/interface'
import { MAX_JOB_BYTES, parseJob, parseJobJson } from '../protocols/job/index.ts'
import {
  MAX_DELTA_BYTES, MAX_DELTA_ENTRIES, MAX_SYNC_BYTES, decodeDelta, decodeSync, encodeDelta, encodeSync
} from '../protocols/manifest/index.ts'
import { MAX_MESSAGE_BYTES, decodeRoundMessage, encodeRoundMessage } from '../protocols/rounds/index.ts'
import * as stateSync from '../protocols/state-sync/index.ts'
import * as status from '../protocols/status/index.ts'
import { readFrame as readSyncFrame } from '../node/manifest/sync.ts'
import { framed } from '../protocols/common/index.ts'

const PEER = '12D3KooWRm8J3iL796zPFi2EtGGtUJn58AG67gcqzMFHZnnsTzqD'
const utf8 = new TextEncoder()
const hex = (c: { minLength?: number, maxLength?: number }): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: c.minLength ?? 0, maxLength: c.maxLength ?? 64 })
const hex64 = hex({ minLength: 64, maxLength: 64 })
const json = (v: unknown): Uint8Array => utf8.encode(JSON.stringify(v))

/** Runs `decode`; passes if it returns, or throws an error of one of the named classes (anything else fails). */
function onlyNamed (decode: (bytes: Uint8Array) => unknown, names: string[]): (bytes: Uint8Array) => void {
  return bytes => {
    try {
      decode(bytes)
    } catch (err) {
      assert.ok(err instanceof Error && names.includes(err.name), `threw ${(err as Error)?.name}: ${(err as Error)?.message}`)
    }
  }
}

/** Byte-level mutations: set a byte, cut, extend, insert, flip a bit. */
const mutation = fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), kind: fc.constantFrom('set', 'truncate', 'extend', 'insert', 'flip') })
function mutate (bytes: Uint8Array, mutations: Array<{ at: number, value: number, kind: string }>): Uint8Array {
  let out = Uint8Array.from(bytes)
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % out.length
    if (m.kind === 'set' && out.length > 0) out[at] = m.value
    else if (m.kind === 'flip' && out.length > 0) out[at] ^= 1 << (m.value % 8)
    else if (m.kind === 'truncate') out = out.subarray(0, at)
    else if (m.kind === 'extend') out = Uint8Array.from([...out, m.value])
    else if (m.kind === 'insert') out = Uint8Array.from([...out.subarray(0, at), m.value, ...out.subarray(at)])
  }
  return out
}

/** Replaces the value at one path of a JSON value with `replacement`. */
function replaceAt (value: unknown, pick: number, replacement: unknown): unknown {
  const paths: Array<Array<string | number>> = [[]]
  const walk = (v: unknown, path: Array<string | number>): void => {
    if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        const p = [...path, Array.isArray(v) ? Number(k) : k]
        paths.push(p)
        walk(child, p)
      }
    }
  }
  walk(value, [])
  const path = paths[pick % paths.length]
  if (path.length === 0) return replacement
  const copy = structuredClone(value) as Record<string | number, unknown>
  let at = copy
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>
  at[path[path.length - 1]] = replacement
  return copy
}

/** A value for anything: JSON-ish, including the awkward ones. */
const anyValue = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(null, -1, 1.5, 2 ** 53, -(2 ** 60), 1e308, '', 'x'.repeat(600), '__proto__', [], {}, { __proto__: { polluted: true } }, { constructor: 1 }, [[[[[]]]]]),
  fc.string({ maxLength: 40 })
)

interface Case {
  name: string
  decode: (bytes: Uint8Array) => unknown
  errors: string[]
  /** Valid messages, as the JSON values they encode. */
  valid: fc.Arbitrary<unknown>
  encode: (value: unknown) => Uint8Array
  /** Bytes above which the decoder must refuse without decoding. */
  max: number
}

const clock = fc.record({ wall: fc.nat(), counter: fc.nat({ max: 2 ** 31 }), peer: fc.constant(PEER) })
const entry = fc.oneof(
  fc.record({ key: fc.constantFrom('claims/s0001', 'claims/s0031'), value: fc.record({ owner: fc.option(fc.constant(PEER), { nil: null }) }), clock }),
  fc.record({ key: fc.constant(`members/${PEER}`), value: fc.record({ state: fc.constantFrom('alive', 'left', 'dead'), addresses: fc.array(fc.constant(`/ip4/10.0.0.1/tcp/4001/p2p/${PEER}`), { maxLength: 3 }), heartbeat: fc.nat(), step: fc.nat(), round: fc.nat() }), clock }),
  fc.record({ key: fc.constant('shards/s0001'), value: fc.record({ index: fc.nat(), rows: fc.nat(), hash: hex({ maxLength: 64 }) }), clock }),
  fc.record({ key: fc.constant('job'), value: fc.record({ epochs: fc.integer({ min: 1, max: 100 }), batchSize: fc.integer({ min: 1, max: 512 }) }), clock })
)
const memberStatus = fc.record({
  peerId: fc.constant(PEER),
  state: fc.constantFrom('training', 'reducing', 'done'),
  at: fc.nat(),
  uptimeSec: fc.nat(),
  backend: fc.constantFrom('wasm', 'cpu', null),
  jobId: fc.option(hex({ minLength: 16, maxLength: 16 }), { nil: null }),
  peers: fc.nat(),
  training: fc.option(fc.record({
    step: fc.nat(), round: fc.nat(), epoch: fc.nat(), epochs: fc.nat(), epochProgress: fc.double({ min: 0, max: 1, noNaN: true }),
    loss: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: null }), accuracy: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
    testLoss: fc.constant(null), samplesPerSec: fc.nat(), weightsHash: fc.option(hex({ minLength: 1, maxLength: 64 }), { nil: null })
  }), { nil: null }),
  shards: fc.record({ mine: fc.nat(), total: fc.nat() }),
  ring: fc.record({ state: fc.constant('idle'), completed: fc.nat(), aborted: fc.nat(), members: fc.array(fc.constant(PEER), { maxLength: 1 }), last: fc.constant(null) })
})

const CASES: Case[] = [
  {
    name: 'job (JSON text)',
    decode: bytes => parseJobJson(new TextDecoder().decode(bytes)),
    errors: ['InvalidJobError'],
    valid: fc.record({ epochs: fc.integer({ min: 1, max: 100 }), hidden: fc.array(fc.integer({ min: 1, max: 512 }), { maxLength: 3 }), optimizer: fc.constantFrom('sgd', 'adam'), dataset: fc.constantFrom('mnist', 'spam') }),
    encode: json,
    max: MAX_JOB_BYTES
  },
  {
    name: 'manifest delta',
    decode: decodeDelta,
    errors: ['InvalidMessageError'],
    valid: fc.array(entry, { maxLength: 4 }).map(entries => ({ v: 1, entries })),
    encode: v => { const d = v as { entries: never }; try { return encodeDelta(d) } catch { return json(v) } },
    max: MAX_DELTA_BYTES
  },
  {
    name: 'manifest sync',
    decode: decodeSync,
    errors: ['InvalidMessageError'],
    valid: fc.record({ v: fc.constant(1), jobId: fc.option(hex({ minLength: 16, maxLength: 16 }), { nil: null }), entries: fc.array(entry, { maxLength: 4 }) }),
    encode: v => { const s = v as { jobId: string | null, entries: never }; try { return encodeSync(s) } catch { return json(v) } },
    max: MAX_SYNC_BYTES
  },
  {
    name: 'rounds',
    decode: decodeRoundMessage,
    errors: ['InvalidMessageError'],
    valid: fc.oneof(
      fc.record({ t: fc.constant('ready'), round: fc.nat(), attempt: fc.nat({ max: 100 }), samples: fc.nat(), weightsHash: hex({ maxLength: 64 }), step: fc.nat() }),
      fc.record({ t: fc.constant('propose'), round: fc.nat(), attempt: fc.nat({ max: 100 }), members: fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9]{1,60}$/), { minLength: 1, maxLength: 5 }), weightsHash: hex({ maxLength: 64 }) })
    ),
    encode: v => { try { return encodeRoundMessage(v as never) } catch { return json(v) } },
    max: MAX_MESSAGE_BYTES
  },
  {
    name: 'state-sync request',
    decode: stateSync.decodeRequest,
    errors: ['InvalidMessageError'],
    valid: fc.oneof(fc.constant({ op: 'meta' }), fc.record({ op: fc.constant('part'), snapshot: hex64, index: fc.nat({ max: 4096 }) })),
    encode: v => Uint8Array.from([1, ...json(v)]),
    max: stateSync.MAX_JSON_BYTES + 1
  },
  {
    name: 'state-sync response',
    decode: stateSync.decodeResponse,
    errors: ['InvalidMessageError'],
    valid: fc.oneof(
      fc.record({ ok: fc.constant(true), snapshot: hex64, round: fc.nat(), step: fc.nat(), weightsHash: hex({ maxLength: 64 }), bytes: fc.nat(), partBytes: fc.constant(stateSync.PART_BYTES) }),
      fc.record({ ok: fc.constant(false), error: fc.string({ maxLength: 100 }) })
    ),
    encode: v => Uint8Array.from([1, ...json(v)]),
    max: stateSync.MAX_FRAME_BYTES
  },
  {
    name: 'status request',
    decode: status.decodeRequest,
    errors: ['InvalidMessageError'],
    valid: fc.constant({ op: 'status' }),
    encode: json,
    max: status.MAX_REQUEST_BYTES
  },
  {
    name: 'status response',
    decode: status.decodeResponse,
    errors: ['InvalidMessageError'],
    valid: fc.oneof(memberStatus.map(s => ({ ok: true, status: s })), fc.record({ ok: fc.constant(false), error: fc.string({ maxLength: 100 }) })),
    encode: json,
    max: status.MAX_RESPONSE_BYTES
  }
]

for (const c of CASES) {
  test(`${c.name}: valid messages decode; random bytes and random JSON throw only ${c.errors.join('/')}`, () => {
    fc.assert(fc.property(c.valid, v => { c.decode(c.encode(v)) }), { numRuns: 50 })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1024 }), onlyNamed(c.decode, c.errors)), { numRuns: 300 })
    fc.assert(fc.property(anyValue, v => { onlyNamed(c.decode, c.errors)(json(v)) }), { numRuns: 300 })
  })

  test(`${c.name}: mutated valid messages throw only ${c.errors.join('/')}`, () => {
    fc.assert(fc.property(c.valid, fc.array(mutation, { minLength: 1, maxLength: 4 }), (v, ms) => {
      onlyNamed(c.decode, c.errors)(mutate(c.encode(v), ms))
    }), { numRuns: 300 })
    fc.assert(fc.property(c.valid, fc.nat(), anyValue, (v, pick, replacement) => {
      onlyNamed(c.decode, c.errors)(c.encode(replaceAt(v, pick, replacement)))
    }), { numRuns: 300 })
  })

  test(`${c.name}: a message over ${c.max} bytes is refused from its length, before it is decoded or parsed`, () => {
    const oversized = new Uint8Array(c.max + 1).fill(0x20)
    oversized[0] = 1
    const decode = TextDecoder.prototype.decode
    const parse = JSON.parse
    let touched = 0
    TextDecoder.prototype.decode = function (...args) { touched += 1; return decode.apply(this, args) }
    JSON.parse = (...args: Parameters<typeof JSON.parse>) => { touched += 1; return parse(...args) }
    try {
      assert.throws(() => c.decode(oversized), (err: Error) => c.errors.includes(err.name))
      // a view claiming a terabyte is refused just as fast (nothing reads its bytes)
      const huge = new Proxy(new Uint8Array(8), {
        get (target, prop) {
          if (prop === 'byteLength' || prop === 'length') return 2 ** 40
          if (prop === '0') return 1
          if (typeof prop === 'string' && /^\d+$/.test(prop)) throw new Error('read a byte of an oversized message')
          const value = Reflect.get(target, prop)
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
      if (c.name !== 'job (JSON text)') assert.throws(() => c.decode(huge), (err: Error) => c.errors.includes(err.name), c.name)
    } finally {
      TextDecoder.prototype.decode = decode
      JSON.parse = parse
    }
    const expected = c.name === 'job (JSON text)' ? 1 : 0 // (a job file is text: only its decoding to a string precedes the check)
    assert.equal(touched, expected, 'the oversized message was decoded or parsed')
  })
}

test('manifest: a delta of more entries than the limit is refused', () => {
  const entries = Array.from({ length: MAX_DELTA_ENTRIES + 1 }, () => ({ key: 'claims/s1', value: null, clock: { wall: 1, counter: 0, peer: PEER } }))
  assert.throws(() => decodeDelta(json({ v: 1, entries })), { name: 'InvalidMessageError' })
})

/** A stream whose source yields `chunks` and records how many were pulled. */
function fakeStream (chunks: Uint8Array[]): { stream: Stream, pulled: () => number } {
  let pulled = 0
  const source = (async function * () {
    for (const c of chunks) {
      pulled += 1
      yield c
    }
  })()
  const stream = {
    source,
    sink: async (src: AsyncIterable<unknown>) => { for await (const _ of src) { /* discard */ } },
    close: async () => {},
    abort: () => {}
  } as unknown as Stream
  return { stream, pulled: () => pulled }
}

test('stream readers: a length prefix over the limit is refused before the frame is buffered', async () => {
  const GiB = 1024 ** 3
  const arrayBuffers = process.memoryUsage().arrayBuffers
  // manifest sync: one frame of at most MAX_SYNC_BYTES; a 4 GiB prefix, then more bytes than the reader should want
  const sync = fakeStream([varint(4 * GiB - 1), new Uint8Array(1024), new Uint8Array(1024)])
  await assert.rejects(readSyncFrame(sync.stream), /length/i)
  assert.ok(sync.pulled() <= 1, `the sync reader pulled ${sync.pulled()} chunks past an oversized prefix`)
  // state sync: frames of at most MAX_FRAME_BYTES
  const state = fakeStream([varint(stateSync.MAX_FRAME_BYTES + 1), new Uint8Array(1024), new Uint8Array(1024)])
  await assert.rejects(framed(state.stream, stateSync.MAX_FRAME_BYTES).next(), /length/i)
  assert.ok(state.pulled() <= 1)
  // an endless run of continuation bytes is not a length
  const endless = fakeStream(Array.from({ length: 64 }, () => new Uint8Array(16).fill(0xff)))
  await assert.rejects(readSyncFrame(endless.stream))
  assert.ok(endless.pulled() <= 2, `pulled ${endless.pulled()} chunks of a never-ending prefix`)
  assert.ok(process.memoryUsage().arrayBuffers - arrayBuffers < 64 * 1024 * 1024, 'no large buffer was allocated')
})

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}
