import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  ABORT_CODES, DATA_HEADER_BYTES, FrameDecoder, HELLO_BYTES, InvalidMessageError, MAX_FRAME_BYTES, MAX_PEER_ID_BYTES,
  MAX_REASON_BYTES, PROTOCOL, decodeFrame, decodeFrames, encodeAbort, encodeData, encodeDone, encodeHello, encodeIdent,
  GATHER_MAX_BYTES, WIRE_VERSION, encodeLengthPrefix, membersHash
} from '../protocols/allreduce/index.ts'
import type { Frame } from '../protocols/allreduce/index.ts'
import { chunkSpans, elementsSent, gatherRecvOrigin, gatherSendOrigin, gathers, recvChunk, sendChunk, stepCount } from '../node/ring/index.ts'

/** Runs `fn`; passes if it returns, or throws InvalidMessageError; fails on any other error. */
function onlyInvalidMessage (fn: () => unknown): void {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof InvalidMessageError) || (err as Error).name !== 'InvalidMessageError') {
      throw new Error(`expected InvalidMessageError, got ${(err as Error)?.name}: ${(err as Error)?.message}`)
    }
  }
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const peerId = fc.string({ minLength: 1, maxLength: 60 })

const arbFrame: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.record({ round: u32, attempt: u32, elements: u32, members: fc.integer({ min: 1, max: 1024 }), gathers: fc.boolean(), ids: fc.array(peerId, { minLength: 1, maxLength: 5 }) })
    .chain(r => fc.integer({ min: 0, max: r.members - 1 }).map(index => encodeHello({ ...r, index, membersHash: membersHash(r.ids) }))),
  fc.record({ round: u32, attempt: u32, step: fc.integer({ min: 0, max: 0xffff }), chunk: u32, offset: u32, values: fc.float32Array({ minLength: 1, maxLength: 64 }) })
    .map(r => encodeData({ ...r, length: r.values.length }, r.values)),
  fc.record({ round: u32, attempt: u32, code: fc.constantFrom(...ABORT_CODES), culprit: fc.option(peerId, { nil: undefined }), reason: fc.string({ maxLength: 300 }) })
    .map(r => encodeAbort(r)),
  peerId.map(peer => encodeIdent({ peer })),
  fc.record({ round: u32, attempt: u32, count: fc.integer({ min: 1, max: 1023 }) }).map(r => encodeDone(r))
)

/** A byte stream of frames, each behind its length prefix. */
const withPrefixes = (frames: Uint8Array[]): Uint8Array => {
  const parts = frames.flatMap(f => [encodeLengthPrefix(f.byteLength), f])
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** Cuts bytes into chunks at the given cut points. */
const cut = (bytes: Uint8Array, cuts: number[]): Uint8Array[] => {
  const points = [...new Set(cuts.map(c => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const chunks: Uint8Array[] = []
  let prev = 0
  for (const p of [...points, bytes.byteLength]) {
    chunks.push(bytes.subarray(prev, p))
    prev = p
  }
  return chunks
}

test('codec: protocol id is built from its parts', () => {
  assert.equal(PROTOCOL, '/peer/allreduce/1.0.0')
})

test('codec: every frame type round-trips', () => {
  const hash = membersHash(['a', 'b', 'c'])
  for (const gathers of [false, true]) {
    const hello = decodeFrame(encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers, membersHash: hash }))
    assert.deepEqual(hello, { type: 'hello', version: WIRE_VERSION, round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers, membersHash: hash })
  }
  assert.equal(encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers: false, membersHash: hash }).byteLength, HELLO_BYTES)

  const values = Float32Array.from([1.5, -2, 3e38, 0])
  const data = decodeFrame(encodeData({ round: 1, attempt: 0, step: 3, chunk: 2, offset: 40, length: 4 }, values))
  assert.equal(data.type, 'data')
  if (data.type !== 'data') return
  assert.deepEqual({ ...data, payload: undefined }, { type: 'data', round: 1, attempt: 0, step: 3, chunk: 2, offset: 40, length: 4, payload: undefined })
  assert.deepEqual(new Float32Array(data.payload.slice().buffer), values)

  assert.deepEqual(decodeFrame(encodeAbort({ round: 9, attempt: 1, code: 'invalid-frame', culprit: 'QmBad', reason: 'NaN at 3' })),
    { type: 'abort', round: 9, attempt: 1, code: 'invalid-frame', culprit: 'QmBad', reason: 'NaN at 3' })
  assert.deepEqual(decodeFrame(encodeAbort({ round: 9, attempt: 1, code: 'cancelled', reason: '' })), { type: 'abort', round: 9, attempt: 1, code: 'cancelled', reason: '' })
  assert.deepEqual(decodeFrame(encodeIdent({ peer: '12D3KooWabc' })), { type: 'ident', peer: '12D3KooWabc' })
  assert.deepEqual(decodeFrame(encodeDone({ round: 3, attempt: 1, count: 2 })), { type: 'done', round: 3, attempt: 1, count: 2 })
})

test('codec: long reasons are cut to the limit on a character boundary', () => {
  const frame = decodeFrame(encodeAbort({ round: 1, attempt: 0, code: 'timeout', reason: 'é'.repeat(MAX_REASON_BYTES) }))
  assert.equal(frame.type, 'abort')
  if (frame.type !== 'abort') return
  assert.ok(Buffer.byteLength(frame.reason) <= MAX_REASON_BYTES)
  assert.match(frame.reason, /^é+$/)
})

test('codec: the member hash depends on order and on every id', () => {
  const h = (ids: string[]): string => Buffer.from(membersHash(ids)).toString('hex')
  assert.equal(h(['a', 'b', 'c']), h(['a', 'b', 'c']))
  assert.notEqual(h(['a', 'b', 'c']), h(['b', 'a', 'c']))
  assert.notEqual(h(['ab', 'c']), h(['a', 'bc']))
  assert.notEqual(h(['a', 'b']), h(['a', 'b', 'c']))
})

test('codec: malformed frames are InvalidMessageError', () => {
  const hash = membersHash(['a'])
  const cases: Array<[string, Uint8Array]> = [
    ['empty', new Uint8Array(0)],
    ['unknown type', Uint8Array.from([99, 0, 0, 0])],
    ['short data', encodeData({ round: 1, attempt: 0, step: 0, chunk: 0, offset: 0, length: 2 }, Float32Array.from([1, 2])).subarray(0, DATA_HEADER_BYTES + 4)],
    ['short hello', encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 1, gathers: false, membersHash: hash }).subarray(0, 40)],
    ['data without elements', encodeData({ round: 1, attempt: 0, step: 0, chunk: 0, offset: 0, length: 0 }, new Float32Array(0))],
    ['bad utf-8 ident', Uint8Array.from([4, 0, 2, 0, 0xff, 0xfe])],
    ['oversized ident', Uint8Array.from([4, 0, 0xff, 0xff])]
  ]
  const helloWrongVersion = encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 1, gathers: false, membersHash: hash })
  helloWrongVersion[1] = 1
  cases.push(['hello of another wire version (1: before gathering rounds)', helloWrongVersion])
  const helloBadMode = encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 1, gathers: false, membersHash: hash })
  helloBadMode[18] = 2
  cases.push(['hello with a mode byte other than 0 or 1', helloBadMode])
  const helloReserved = encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 1, gathers: true, membersHash: hash })
  helloReserved[19] = 1
  cases.push(['hello with its reserved byte set', helloReserved])
  const helloBadIndex = encodeHello({ round: 1, attempt: 0, members: 2, index: 1, elements: 1, gathers: false, membersHash: hash })
  helloBadIndex[16] = 5
  cases.push(['hello position outside the list', helloBadIndex])
  const abortBadCode = encodeAbort({ round: 1, attempt: 0, code: 'timeout', reason: 'x' })
  abortBadCode[1] = 200
  cases.push(['abort with unknown code', abortBadCode])
  for (const [name, bytes] of cases) {
    assert.throws(() => decodeFrame(bytes), (err: Error) => err.name === 'InvalidMessageError', name)
  }
  assert.ok(MAX_PEER_ID_BYTES < 0xffff)
})

test('decoder: frames come back whole however the stream is cut', () => {
  fc.assert(fc.property(fc.array(arbFrame, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
    const decoder = new FrameDecoder()
    const out: Uint8Array[] = []
    for (const chunk of cut(withPrefixes(frames), cuts)) out.push(...decoder.push(chunk))
    decoder.end()
    assert.equal(out.length, frames.length)
    for (let i = 0; i < frames.length; i++) assert.deepEqual(out[i], frames[i])
    const decoded: Frame[] = out.map(decodeFrame)
    assert.equal(decoded.length, frames.length)
  }), { numRuns: 300 })
})

test('decoder: a prefix above the limit throws at once, before anything is buffered', () => {
  const decoder = new FrameDecoder()
  const huge = encodeLengthPrefix(0xffff_ffff)
  const before = process.memoryUsage().arrayBuffers
  assert.throws(() => decoder.push(huge), (err: Error) => err.name === 'InvalidMessageError' && (err as InvalidMessageError).kind === 'too-large')
  assert.ok(process.memoryUsage().arrayBuffers - before < 1024 * 1024, 'nothing of the claimed size was allocated')
  // Once broken, it stays broken.
  assert.throws(() => decoder.push(Uint8Array.from([1, 1])), { name: 'InvalidMessageError' })
  // Exactly the limit is fine; one more byte is not.
  assert.doesNotThrow(() => new FrameDecoder().push(encodeLengthPrefix(MAX_FRAME_BYTES)))
  assert.throws(() => new FrameDecoder().push(encodeLengthPrefix(MAX_FRAME_BYTES + 1)), { name: 'InvalidMessageError' })
  // A varint that never ends is cut off after three bytes.
  assert.throws(() => new FrameDecoder().push(Uint8Array.from([0x80, 0x80, 0x80, 0x80])), { name: 'InvalidMessageError' })
})

test('decoder: a stream that ends inside a frame is a truncated InvalidMessageError', () => {
  const decoder = new FrameDecoder()
  decoder.push(withPrefixes([encodeIdent({ peer: 'abc' })]).subarray(0, 4))
  assert.throws(() => { decoder.end() }, (err: Error) => err instanceof InvalidMessageError && err.kind === 'truncated')
})

test('fuzz: random bytes only ever throw InvalidMessageError, and allocate no more than the limit', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
    onlyInvalidMessage(() => decodeFrame(bytes))
    const decoder = new FrameDecoder(4096)
    onlyInvalidMessage(() => {
      for (const chunk of cut(bytes, cuts)) {
        for (const frame of decoder.push(chunk)) {
          assert.ok(frame.byteLength <= 4096)
          onlyInvalidMessage(() => decodeFrame(frame))
        }
      }
      decoder.end()
    })
  }), { numRuns: 2000 })
})

test('fuzz: mutated valid frames only ever throw InvalidMessageError', () => {
  const mutation = fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), kind: fc.constantFrom('set', 'truncate', 'extend', 'flip') })
  fc.assert(fc.property(arbFrame, fc.array(mutation, { minLength: 1, maxLength: 4 }), (frame, mutations) => {
    let bytes = frame.slice()
    for (const m of mutations) {
      const at = bytes.byteLength === 0 ? 0 : m.at % bytes.byteLength
      if (m.kind === 'set' && bytes.byteLength > 0) bytes[at] = m.value
      if (m.kind === 'flip' && bytes.byteLength > 0) bytes[at] ^= 1 << (m.value % 8)
      if (m.kind === 'truncate') bytes = bytes.subarray(0, at)
      if (m.kind === 'extend') bytes = Uint8Array.from([...bytes, m.value])
    }
    onlyInvalidMessage(() => decodeFrame(bytes))
    // The same bytes inside a stream, with a mutated prefix too.
    const stream = withPrefixes([frame])
    stream[mutations[0].at % stream.byteLength] = mutations[0].value
    const decoder = new FrameDecoder()
    onlyInvalidMessage(() => {
      for (const f of decoder.push(stream)) onlyInvalidMessage(() => decodeFrame(f))
      decoder.end()
    })
  }), { numRuns: 2000 })
})

test('fuzz: the async frame decoder throws InvalidMessageError only', async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), async chunks => {
    try {
      for await (const _ of decodeFrames((async function * () { yield * chunks })())) { /* drain */ }
    } catch (err) {
      assert.equal((err as Error).name, 'InvalidMessageError')
    }
  }), { numRuns: 300 })
})

test('layout: chunks cover the vector exactly, also when it is shorter than the ring', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 40 }), (elements, n) => {
    const spans = chunkSpans(elements, n)
    assert.equal(spans.length, n)
    let next = 0
    for (const s of spans) {
      assert.equal(s.start, next)
      next += s.length
    }
    assert.equal(next, elements)
    const sizes = spans.map(s => s.length)
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1)
  }))
})

test('layout: every member sends 2(N−1)/N of the vector, and forwards what it received the step before', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 2, max: 12 }), (elements, n) => {
    const spans = chunkSpans(elements, n)
    let total = 0
    for (let rank = 0; rank < n; rank++) {
      const pred = (rank - 1 + n) % n
      for (let t = 0; t < stepCount(n); t++) {
        // What I receive at step t is what my predecessor sends at step t.
        assert.equal(recvChunk(rank, t, n), sendChunk(pred, t, n))
        if (t > 0) assert.equal(sendChunk(rank, t, n), recvChunk(rank, t - 1, n))
      }
      total += elementsSent(elements, n, rank)
      // Reduce-scatter leaves member `rank` with chunk rank+1, which it sends first in the all-gather.
      assert.equal(sendChunk(rank, n - 1, n), (rank + 1) % n)
    }
    assert.equal(total, 2 * (n - 1) * elements, 'all members together send 2(N−1) vectors')
    assert.ok(spans.length === n)
  }))
})

test('layout: a gathering round hands every vector to every member in N − 1 steps, each forwarded the step after it came', () => {
  fc.assert(fc.property(fc.integer({ min: 2, max: 12 }), n => {
    for (let rank = 0; rank < n; rank++) {
      const pred = (rank - 1 + n) % n
      const seen = new Set<number>()
      for (let t = 0; t < n - 1; t++) {
        // what I receive at step t is what my predecessor sends at step t; what I send at t I received at t − 1
        assert.equal(gatherRecvOrigin(rank, t, n), gatherSendOrigin(pred, t, n))
        assert.equal(gatherSendOrigin(rank, t, n), t === 0 ? rank : gatherRecvOrigin(rank, t - 1, n))
        seen.add(gatherRecvOrigin(rank, t, n))
      }
      assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i).filter(i => i !== rank), 'every other vector, once')
    }
  }))
})

test('layout: which rounds gather whole vectors: small vectors, none with the limit at 0', () => {
  assert.equal(gathers(GATHER_MAX_BYTES / 4, 2), true)
  assert.equal(gathers(GATHER_MAX_BYTES / 4 + 1, 2), false)
  assert.equal(gathers(1024, 3), true)
  assert.equal(gathers(GATHER_MAX_BYTES / 4 / 2, 3), true)
  assert.equal(gathers(GATHER_MAX_BYTES / 4 / 2 + 1, 3), false)
  assert.equal(gathers(1024, 1), false)
  assert.equal(gathers(1024, 2, 0), false)
  assert.equal(gathers(1024, 3, 0), false)
})
