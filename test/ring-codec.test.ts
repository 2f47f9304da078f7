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
  fc.record({ round: u32, attempt: u32, step: fc.integer({ min: 0, max: 0xffff }), chunk: u32, offset: u32, values: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 64 }) })
    .map(r => encodeData({ ...r, length: r.values.length, bf16: true }, Uint16Array.from(r.values))),
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
    assert.deepEqual(hello, { type: 'hello', version: WIRE_VERSION, round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers, compression: 'none', exact: 0, membersHash: hash })
  }
  const bf16Hello = decodeFrame(encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers: false, compression: 'bf16', exact: 40, membersHash: hash }))
  assert.deepEqual(bf16Hello, { type: 'hello', version: WIRE_VERSION, round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers: false, compression: 'bf16', exact: 40, membersHash: hash })
  assert.throws(() => encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 10, gathers: false, compression: 'bf16', exact: 11, membersHash: hash }), RangeError)
  assert.throws(() => encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 10, gathers: false, exact: 1, membersHash: hash }), RangeError)
  assert.equal(encodeHello({ round: 7, attempt: 2, members: 3, index: 1, elements: 1001, gathers: false, membersHash: hash }).byteLength, HELLO_BYTES)

  const values = Float32Array.from([1.5, -2, 3e38, 0])
  const data = decodeFrame(encodeData({ round: 1, attempt: 0, step: 3, chunk: 2, offset: 40, length: 4 }, values))
  assert.equal(data.type, 'data')
  if (data.type !== 'data') return
  assert.deepEqual({ ...data, payload: undefined }, { type: 'data', round: 1, attempt: 0, step: 3, chunk: 2, offset: 40, length: 4, bf16: false, payload: undefined })
  assert.deepEqual(new Float32Array(data.payload.slice().buffer), values)
  const halves = Uint16Array.from([0x3fc0, 0xc000, 0x7f7f, 0])
  const narrow = decodeFrame(encodeData({ round: 1, attempt: 0, step: 3, chunk: 2, offset: 40, length: 4, bf16: true }, halves))
  assert.equal(narrow.type, 'data')
  if (narrow.type !== 'data') return
  assert.equal(narrow.bf16, true)
  assert.equal(narrow.payload.byteLength, 8, 'two bytes an element')
  assert.deepEqual(new Uint16Array(narrow.payload.slice().buffer), halves)
  assert.throws(() => encodeData({ round: 1, attempt: 0, step: 0, chunk: 0, offset: 0, length: 4 }, halves), RangeError)

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
  const helloCompression = encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 1, gathers: true, membersHash: hash })
  helloCompression[19] = 2
  cases.push(['hello with an unknown compression', helloCompression])
  const helloExact = encodeHello({ round: 1, attempt: 0, members: 1, index: 0, elements: 8, gathers: false, compression: 'bf16', exact: 8, membersHash: hash })
  helloExact[52] = 9
  cases.push(['hello with more exact elements than elements', helloExact])
  helloExact[52] = 1
  helloExact[19] = 0
  cases.push(['hello without compression that says some elements are exact', helloExact])
  const dataFormat = encodeData({ round: 1, attempt: 0, step: 0, chunk: 0, offset: 0, length: 2 }, Float32Array.from([1, 2]))
  dataFormat[1] = 2
  cases.push(['data frame of an unknown format', dataFormat])
  const dataHalfLength = encodeData({ round: 1, attempt: 0, step: 0, chunk: 0, offset: 0, length: 2 }, Float32Array.from([1, 2]))
  dataHalfLength[1] = 1
  cases.push(['bfloat16 data frame carrying float32 bytes', dataHalfLength])
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

test('bfloat16: narrow rounds to nearest, ties to even, keeps NaN and ±Inf non-finite; widen is exact; write-back holds what is sent', async () => {
  const { narrowFloats: narrow, widenFloats: widen } = await import('../node/common/simd-floats.ts')
  const f32 = new Float32Array(1)
  const u32 = new Uint32Array(f32.buffer)
  const valueOf = (bits: number): number => { u32[0] = bits >>> 0; return f32[0] }
  /** The reference: of the two bfloat16s around x, the nearer; at a tie, the one with an even last bit. */
  const reference = (bits: number): number => {
    const x = valueOf(bits)
    if (!Number.isFinite(x)) return bits >>> 16
    const lo = bits >>> 16
    const hi = (lo + 1) & 0xffff
    const dLo = Math.abs(valueOf(lo << 16) - x)
    const vHi = valueOf(hi << 16)
    const dHi = Math.abs(vHi - x)
    if (dLo < dHi) return lo
    if (dHi < dLo) return hi
    return (lo & 1) === 0 ? lo : hi
  }
  const edges = [0, 0x80000000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x7f7fffff, 0xff7fffff, 0x7f7f7fff, 0x00000001, 0x00008000, 0x00018000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff]
  const random = Array.from({ length: 20_000 }, () => Math.floor(Math.random() * 2 ** 32))
  const all = [...edges, ...random]
  const from = new Float32Array(all.length)
  new Uint32Array(from.buffer).set(all)
  const out = new Uint16Array(all.length)
  narrow(from, 0, all.length, out, false)
  all.forEach((bits, k) => {
    const x = valueOf(bits)
    if (Number.isNaN(x)) assert.ok(Number.isNaN(valueOf(out[k] << 16)) || !Number.isFinite(valueOf(out[k] << 16)), `NaN ${bits.toString(16)} stays non-finite`)
    else if (!Number.isFinite(x)) assert.equal(valueOf(out[k] << 16), x, 'Inf stays Inf')
    else if ((reference(bits) & 0x7fff) === 0x7f7f) assert.ok(out[k] === reference(bits) || !Number.isFinite(valueOf(out[k] << 16)), `${bits.toString(16)}: the largest bfloat16, or past it Inf`)
    else assert.equal(out[k], reference(bits), `${bits.toString(16)} (${x})`)
  })
  // widen: exact, at any alignment
  for (const shift of [0, 1]) {
    const bytes = new Uint8Array(out.byteLength + shift)
    bytes.set(new Uint8Array(out.buffer), shift)
    const floats = widen(bytes.subarray(shift), { buf: new Float32Array(0) })
    const bits = new Uint32Array(floats.buffer, floats.byteOffset, floats.length)
    for (let k = 0; k < out.length; k++) assert.equal(bits[k], (out[k] << 16) >>> 0, `shift ${shift} element ${k}`)
  }
  // write-back: the array holds the values sent
  const kept = from.slice(17, 1017)
  const sent = new Uint16Array(kept.length)
  narrow(kept, 0, kept.length, sent, true)
  const keptBits = new Uint32Array(kept.buffer)
  for (let k = 0; k < kept.length; k++) assert.equal(keptBits[k], (sent[k] << 16) >>> 0)
})

test('bfloat16 in SIMD (NarrowRoom, FloatKernels.roundBf16, addFromBf16, copyBf16) gives the JavaScript loops\' bits, tails included', async () => {
  const { NarrowRoom, narrowFloats, simdFloats, simdKernelsOf, widenFloats } = await import('../node/common/simd-floats.ts')
  const length = 1000
  const edges = [0, 0x80000000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x00008000]
  const values = new Float32Array(length)
  const bits = new Uint32Array(values.buffer)
  for (let k = 0; k < length; k++) bits[k] = k < edges.length ? edges[k] : Math.floor(Math.random() * 2 ** 32)
  for (let k = edges.length; k < length; k++) if (!Number.isFinite(values[k])) values[k] = k // finite beyond the edges, for the adds
  const room = new NarrowRoom(2 * length, 256)
  for (const [at, count] of [[0, 256], [3, 250], [17, 7], [100, 1], [0, 8], [9, 255]]) {
    const expected = new Uint16Array(count)
    narrowFloats(values, at, count, expected, false)
    const got = room.narrow(values, at, count, 5 + at)
    assert.deepEqual(new Uint16Array(got.slice().buffer), expected, `narrow at ${at} count ${count}`)
    // rounding in place, in a sum buffer's kernels, against the loop's write-back
    const work = simdFloats(length, 4096)
    const plain = new Float32Array(length)
    work.set(values)
    plain.set(values)
    simdKernelsOf(work)?.roundBf16(at, count)
    narrowFloats(plain, at, count, new Uint16Array(count), true)
    assert.ok(simdKernelsOf(work) !== null)
    assert.deepEqual(Buffer.from(work.buffer, 0, length * 4), Buffer.from(plain.buffer), `round in place at ${at} count ${count}`)
    // widening: added to a base and copied, at an odd payload offset too
    for (const shift of [0, 1]) {
      const bytes = new Uint8Array(count * 2 + shift)
      bytes.set(got, shift)
      const payload = bytes.subarray(shift)
      const wide = widenFloats(payload, { buf: new Float32Array(0) })
      const base = Float32Array.from({ length }, (_, k) => k - 500.25)
      const sum = simdFloats(length, 4096)
      const kernels = simdKernelsOf(sum)!
      const bad = kernels.addFromBf16(at, base, payload)
      const firstBad = wide.findIndex(v => !Number.isFinite(v))
      assert.equal(bad, firstBad, `add: the first non-finite value at ${at} count ${count}`)
      for (let k = 0; k < count; k++) assert.ok(Object.is(sum[at + k], Math.fround(base[at + k] + wide[k])), `add at ${at + k}`)
      const copied = simdFloats(length, 4096)
      assert.equal(simdKernelsOf(copied)!.copyBf16(at, payload), firstBad)
      assert.deepEqual(Buffer.from(copied.buffer, at * 4, count * 4), Buffer.from(wide.buffer, wide.byteOffset, count * 4), `copy at ${at} count ${count}`)
    }
  }
})
