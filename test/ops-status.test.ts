/**
 * `/peer/status/1.0.0`: the codec (round trips, bounds, a fuzzed decoder
 * that only ever returns a valid message or throws InvalidMessageError) and
 * the service between in-process libp2p nodes (answers, unreachable members,
 * oversized and malformed frames, a member that never answers).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import * as lp from 'it-length-prefixed'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import {
  MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, STATUS_PROTOCOL,
  decodeRequest, decodeResponse, encodeRequest, encodeResponse, memberStatusSchema
} from '../protocols/status/index.ts'
import type { MemberStatus } from '../protocols/status/index.ts'
import { ProtocolService } from '../protocols/common/index.ts'
import { StatusService, markAgreement } from '../node/ops/status-service.ts'
import type { SwarmRow } from '../node/ops/types.ts'

const PEER_A = '12D3KooWS3JqeBUQFHt7q8LDUHKVHdABxM2uQukegvY7UXnASokt'

function summary (peerId: string, over: Partial<MemberStatus> = {}): MemberStatus {
  return {
    peerId,
    state: 'training',
    at: Date.now(),
    uptimeSec: 12,
    backend: 'wasm',
    jobId: '554daac8e1244add',
    peers: 2,
    training: { step: 40, round: 40, epoch: 0, epochs: 3, epochProgress: 0.25, loss: 0.7, accuracy: null, testLoss: null, samplesPerSec: 900, weightsHash: 'f534ff9c0980a795' },
    shards: { mine: 11, total: 32 },
    ring: { state: 'done', completed: 40, aborted: 1, members: [peerId], last: { round: 39, ms: 3.2, bytesSent: 170_000, algbw: 5e7, members: 3 } },
    ...over
  }
}

// ---- codec -------------------------------------------------------------------

const idArb = fc.stringMatching(/^[A-Za-z0-9]{1,60}$/)
const statusArb: fc.Arbitrary<MemberStatus> = fc.record({
  peerId: idArb,
  state: fc.constantFrom('training', 'reducing', 'done', 'syncing'),
  at: fc.nat(),
  uptimeSec: fc.nat(),
  backend: fc.option(fc.constantFrom('wasm', 'cpu', 'tensorflow')),
  jobId: fc.option(fc.stringMatching(/^[0-9a-f]{16}$/)),
  peers: fc.nat(1000),
  training: fc.option(fc.record({
    step: fc.nat(),
    round: fc.nat(),
    epoch: fc.nat(100),
    epochs: fc.nat(100),
    epochProgress: fc.double({ min: 0, max: 1, noNaN: true }),
    loss: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true })),
    accuracy: fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
    testLoss: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true })),
    samplesPerSec: fc.double({ min: 0, max: 1e9, noNaN: true }),
    weightsHash: fc.option(fc.stringMatching(/^[0-9a-f]{16}$/))
  })),
  shards: fc.record({ mine: fc.nat(1000), total: fc.nat(1000) }),
  ring: fc.record({
    state: fc.constantFrom('idle', 'collecting', 'reducing', 'done'),
    completed: fc.nat(),
    aborted: fc.nat(),
    members: fc.array(idArb, { maxLength: 20 }),
    last: fc.option(fc.record({ round: fc.nat(), ms: fc.double({ min: 0, max: 1e6, noNaN: true }), bytesSent: fc.nat(), algbw: fc.double({ min: 0, max: 1e12, noNaN: true }), members: fc.nat(1024) }))
  })
})

test('requests and responses round-trip', () => {
  assert.deepEqual(decodeRequest(encodeRequest({ op: 'status' })), { op: 'status' })
  fc.assert(fc.property(statusArb, s => {
    // JSON turns -0 into 0: compare with what JSON makes of it
    const expected = JSON.parse(JSON.stringify({ ok: true, status: s }))
    assert.deepEqual(decodeResponse(encodeResponse({ ok: true, status: s })), expected)
  }), { numRuns: 300 })
  assert.deepEqual(decodeResponse(encodeResponse({ ok: false, error: 'busy' })), { ok: false, error: 'busy' })
})

test('the decoder returns a valid message or throws InvalidMessageError, whatever the bytes', () => {
  const check = (bytes: Uint8Array): void => {
    for (const decode of [decodeRequest, decodeResponse] as Array<(b: Uint8Array) => unknown>) {
      try {
        const msg = decode(bytes)
        assert.ok(msg !== null && typeof msg === 'object')
      } catch (err) {
        assert.equal((err as Error).name, 'InvalidMessageError', (err as Error).stack)
      }
    }
  }
  // random bytes
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), bytes => { check(bytes) }), { numRuns: 500 })
  // random JSON values, and random objects shaped a little like the real ones
  fc.assert(fc.property(fc.jsonValue(), v => { check(new TextEncoder().encode(JSON.stringify(v))) }), { numRuns: 500 })
  fc.assert(fc.property(fc.record({ ok: fc.boolean(), status: fc.anything(), error: fc.anything() }, { requiredKeys: [] }), v => {
    let text: string
    try { text = JSON.stringify(v) } catch { return }
    if (text !== undefined) check(new TextEncoder().encode(text))
  }), { numRuns: 300 })
  // mutations of a valid response: flipped bytes, truncation, a field changed to another type
  const valid = encodeResponse({ ok: true, status: summary(PEER_A) })
  fc.assert(fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length), (at, value, cut) => {
    const flipped = valid.slice()
    flipped[at] = value
    check(flipped)
    check(valid.subarray(0, cut))
  }), { numRuns: 500 })
  const base = summary(PEER_A) as unknown as Record<string, unknown>
  fc.assert(fc.property(fc.constantFrom(...Object.keys(base)), fc.jsonValue(), (key, value) => {
    check(new TextEncoder().encode(JSON.stringify({ ok: true, status: { ...base, [key]: value } })))
  }), { numRuns: 300 })
})

test('frames are bounded and fields validated', () => {
  const big = new Uint8Array(MAX_RESPONSE_BYTES + 1).fill(0x20)
  assert.throws(() => decodeResponse(big), { name: 'InvalidMessageError', message: /exceeds/ })
  assert.throws(() => decodeRequest(new Uint8Array(MAX_REQUEST_BYTES + 1)), { name: 'InvalidMessageError' })
  const tooManyMembers = summary(PEER_A, { ring: { ...summary(PEER_A).ring, members: Array.from({ length: 1025 }, (_, i) => `P${i}`) } })
  assert.throws(() => encodeResponse({ ok: true, status: tooManyMembers }), { name: 'InvalidMessageError' })
  const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))
  const s = summary(PEER_A)
  for (const bad of [
    { ...s, peerId: 'not/a/peer' },
    { ...s, training: { ...s.training, accuracy: 1.5 } },
    { ...s, training: { ...s.training, step: -1 } },
    { ...s, training: { ...s.training, weightsHash: '<script>' } },
    { ...s, extra: true },
    { ...s, state: 'x'.repeat(65) }
  ]) {
    assert.throws(() => decodeResponse(enc({ ok: true, status: bad })), { name: 'InvalidMessageError' })
  }
  assert.throws(() => decodeRequest(enc({ op: 'status', more: 1 })), { name: 'InvalidMessageError' })
  assert.throws(() => decodeRequest(enc({ op: 'shutdown' })), { name: 'InvalidMessageError' })
  assert.ok(memberStatusSchema.safeParse(s).success)
})

test('weight hashes are compared among members at the same round', () => {
  const row = (peerId: string, round: number, hash: string | null): SwarmRow => ({
    peerId, self: false, reachable: true, error: null, agreement: 'unknown', linkBytesPerSec: null,
    status: summary(peerId, { training: { ...summary(peerId).training!, round, weightsHash: hash } })
  })
  const rows = [row('A', 7, 'aa'), row('B', 7, 'aa'), row('C', 7, 'cc'), row('D', 8, 'dd'), row('E', 7, null)]
  markAgreement(rows)
  assert.deepEqual(rows.map(r => r.agreement), ['agree', 'agree', 'differs', 'alone', 'unknown'])
  const one = [row('A', 3, 'aa')]
  markAgreement(one)
  assert.equal(one[0].agreement, 'unknown', 'a swarm of one has nothing to compare with')
})

// ---- the service between libp2p nodes ------------------------------------------

let nodes: Libp2p[] = []

async function node (): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  nodes.push(n)
  return n
}

before(async () => { nodes = [] })
after(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

test('members answer with their summary; an unreachable one is reported as such', async () => {
  const [a, b] = [await node(), await node()]
  const serviceA = new StatusService({ node: a, summary: () => summary(a.peerId.toString()) })
  const serviceB = new StatusService({ node: b, summary: () => summary(b.peerId.toString(), { state: 'reducing' }) }, { timeoutMs: 2000 })
  // a ProtocolService: the constructor registers nothing, start() does (twice is once), stop() removes it
  assert.ok(serviceA instanceof ProtocolService)
  assert.equal(serviceA.protocol, STATUS_PROTOCOL)
  assert.equal(serviceA.isStarted, false)
  assert.ok(!a.getProtocols().includes(STATUS_PROTOCOL))
  await serviceA.start()
  await serviceA.start()
  assert.equal(serviceA.isStarted, true)
  assert.ok(a.getProtocols().includes(STATUS_PROTOCOL))
  await serviceB.start()
  await b.dial(a.getMultiaddrs()[0])
  const answer = await serviceB.ask(a.peerId.toString())
  assert.equal(answer.peerId, a.peerId.toString())
  assert.equal(answer.state, 'training')
  assert.equal(serviceA.served, 1)

  const ghost = PEER_A // a peer id no node here has
  const view = await serviceB.gather([a.peerId.toString(), ghost])
  assert.equal(view.members.length, 3)
  const byId = new Map(view.members.map(m => [m.peerId, m]))
  assert.equal(byId.get(b.peerId.toString())?.self, true)
  assert.equal(byId.get(b.peerId.toString())?.status?.state, 'reducing')
  assert.equal(byId.get(a.peerId.toString())?.reachable, true)
  assert.equal(byId.get(ghost)?.reachable, false)
  assert.match(byId.get(ghost)?.error ?? '', /Error/)
  assert.equal(byId.get(a.peerId.toString())?.linkBytesPerSec, Math.round(170_000 / 0.0032))
  await serviceA.stop()
  assert.equal(serviceA.isStarted, false)
  assert.ok(!a.getProtocols().includes(STATUS_PROTOCOL))
  await assert.rejects(serviceB.ask(a.peerId.toString()), 'a stopped member no longer answers')
  await serviceA.stop()
  await serviceB.stop()
})

test('an oversized or malformed request is refused and the member keeps serving', async () => {
  const [a, b] = [await node(), await node()]
  const service = new StatusService({ node: a, summary: () => summary(a.peerId.toString()) })
  await service.start()
  await b.dial(a.getMultiaddrs()[0])
  for (const frame of [new Uint8Array(MAX_REQUEST_BYTES + 100).fill(0x7b), new TextEncoder().encode('{"op":"rm -rf"}')]) {
    const stream = await b.dialProtocol(a.peerId, STATUS_PROTOCOL)
    await stream.sink([lp.encode.single(frame).subarray()])
    const got: Uint8Array[] = []
    await (async () => { for await (const chunk of stream.source) got.push(chunk.subarray()) })().catch(() => {})
    assert.equal(got.length, 0, 'no answer to a bad request')
  }
  assert.equal(service.rejected, 2)
  const client = new StatusService({ node: b, summary: () => summary(b.peerId.toString()) })
  assert.equal((await client.ask(a.peerId.toString())).peerId, a.peerId.toString())
  await service.stop()
})

test('a member that answers garbage, too much, someone else\'s status, or nothing gets a named error', async () => {
  const [a, b] = [await node(), await node()]
  const client = new StatusService({ node: b, summary: () => summary(b.peerId.toString()) }, { timeoutMs: 1500 })
  await b.dial(a.getMultiaddrs()[0])
  const cases: Array<[string, Uint8Array | null, string]> = [
    ['garbage', new TextEncoder().encode('{"ok":true,"status":{"peerId":1}}'), 'InvalidMessageError'],
    ['oversized', new Uint8Array(MAX_RESPONSE_BYTES + 10).fill(0x20), 'InvalidMessageError'],
    ['impostor', encodeResponse({ ok: true, status: summary(PEER_A) }), 'InvalidMessageError'],
    ['error', encodeResponse({ ok: false, error: 'not now' }), 'StatusRequestError'],
    ['silent', null, 'TimeoutError']
  ]
  for (const [what, answer, name] of cases) {
    await a.handle(STATUS_PROTOCOL, ({ stream }) => {
      if (answer === null) return // never answers
      void stream.sink([lp.encode.single(answer).subarray()]).catch(() => {})
    }, { force: true })
    const started = Date.now()
    await assert.rejects(client.ask(a.peerId.toString()), { name }, what)
    assert.ok(Date.now() - started < 5000, `${what}: failed within the timeout`)
    await a.unhandle(STATUS_PROTOCOL)
  }
})
