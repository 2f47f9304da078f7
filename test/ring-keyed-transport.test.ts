/**
 * The ring's keyed data plane (`node/ring/keyed-transport.ts`, `protocols/ring-key`): the records alone
 * (sealed and opened across any chunking; a flipped, replayed or reordered record, an oversized length, a bad
 * open record all refused before anything is buffered or returned), then a real 3-member ring on swarm networks
 * (`startNetwork` with a swarm key, as `peer start` runs it) over real TCP: sums across sizes and rounds on one
 * connection per neighbour; raw clients on the data port (garbage, an unknown session, a replayed first record)
 * dropped; a flipped byte on the wire aborting the round, never a wrong sum; and no session for a node without
 * the swarm key, with another key, or off the allow-list.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { once } from 'node:events'
import { pino } from 'pino'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { startNetwork } from '../node/network/index.ts'
import type { Network } from '../node/network/index.ts'
import { generateSwarmKey } from '../node/security/index.ts'
import { Ring, createKeyedRingTransport } from '../node/ring/index.ts'
import type { KeyedRingTransport, AllReduceResult } from '../node/ring/index.ts'
import {
  KEY_PROTOCOL, OPEN_RECORD_BYTES, PREAMBLE_BYTES, RECORD_HEADER_BYTES, RecordOpener, RecordSealer, SESSION_ID_BYTES,
  TAG_BYTES, UnknownSessionError, deriveSessionKey, encodePreamble
} from '../protocols/ring-key/index.ts'
import type { RecordCipher } from '../protocols/ring-key/index.ts'

const logger = pino({ level: 'silent' })
/** RING_LOG=1 prints the rings' and transports' logs. */
const ringLog = process.env.RING_LOG === undefined ? undefined : (msg: string) => { process.stderr.write(`${msg}\n`) }
/** Small blocks: even short vectors take several records per chunk. */
const BLOCK_BYTES = 256
const DEADLINE_MS = 10_000

const stoppers: Array<() => Promise<void>> = []
after(async () => { for (const stop of stoppers.reverse()) await stop().catch(() => {}) })

/** Resolves with the promise, or rejects once `ms` have passed. */
async function within<T> (promise: Promise<T>, what: string, ms = DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: no result within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

describe('records', () => {
  const sessionId = randomBytes(SESSION_ID_BYTES)
  const key = deriveSessionKey({ dialerShare: randomBytes(32), listenerShare: randomBytes(32), sessionId, dialer: 'a', listener: 'b' })
  const opener = (k = key, id = sessionId, max = 4096): RecordOpener => new RecordOpener({
    maxRecordBytes: max,
    keyFor: got => {
      if (!Buffer.from(got).equals(id)) throw new UnknownSessionError('unknown session')
      return k
    }
  })
  /** A connection's bytes: preamble, open record, then one record per message. */
  const stream = (messages: Uint8Array[][], cipher?: RecordCipher): Uint8Array[] => {
    const sealer = new RecordSealer(key, { maxRecordBytes: 4096, ...(cipher !== undefined ? { cipher } : {}) })
    return [Buffer.concat(sealer.opening(sessionId)), ...messages.map(parts => Buffer.concat(sealer.seal(parts)))]
  }
  const messages = [[Uint8Array.of(1, 2, 3)], [randomBytes(24), randomBytes(1000)], [randomBytes(4096)]]

  for (const cipher of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    test(`${cipher}: what was sealed opens, in order, whatever the chunking`, () => {
      const bytes = Buffer.concat(stream(messages, cipher))
      for (const step of [1, 3, 17, 64, 1000, bytes.byteLength]) {
        const o = new RecordOpener({ cipher, maxRecordBytes: 4096, keyFor: () => key })
        const out: Uint8Array[] = []
        for (let at = 0; at < bytes.byteLength; at += step) out.push(...o.push(bytes.subarray(at, at + step)))
        o.end()
        assert.equal(out.length, messages.length + 1)
        assert.equal(out[0].byteLength, OPEN_RECORD_BYTES, 'the open record comes first')
        messages.forEach((parts, i) => { assert.deepEqual(Buffer.from(out[i + 1]), Buffer.concat(parts), `record ${i + 1}, chunks of ${step}`) })
      }
    })
  }

  /**
   * Feeds `bytes` as a socket reading into the opener's own buffer would: `step` bytes at a time, straight into
   * `readTarget()` while it offers one (then `wrote`), else as a chunk to `push`.
   */
  const feedDirect = (o: RecordOpener, bytes: Uint8Array, step: number): { records: Uint8Array[], direct: number } => {
    const records: Uint8Array[] = []
    let direct = 0
    for (let at = 0; at < bytes.byteLength;) {
      const target = o.readTarget()
      if (target !== null) {
        const take = Math.min(step, target.byteLength, bytes.byteLength - at)
        target.set(bytes.subarray(at, at + take))
        records.push(...o.wrote(take))
        direct += take
        at += take
      } else {
        records.push(...o.push(bytes.subarray(at, at + step)))
        at += step
      }
    }
    return { records, direct }
  }

  test('headers and bodies read straight into the opener (readTarget, wrote) open as pushed ones do; a flipped bit or an oversized length there is refused', () => {
    const big = [[randomBytes(4000)], [randomBytes(3000), randomBytes(1000)], [randomBytes(10)]]
    const bytes = Buffer.concat(stream(big))
    for (const step of [1, 100, 1500, 5000]) {
      const o = opener()
      const { records, direct } = feedDirect(o, bytes, step)
      o.end()
      assert.equal(records.length, big.length + 1, `chunks of ${step}`)
      big.forEach((parts, i) => { assert.deepEqual(Buffer.from(records[i + 1]), Buffer.concat(parts), `record ${i + 1}, chunks of ${step}`) })
      if (step < 4000) assert.ok(direct > 0, `chunks of ${step}: some bodies went straight into the opener`)
    }
    const o = opener()
    const at = bytes.byteLength - 2000
    const bad = Buffer.from(bytes)
    bad[at] ^= 0x01
    assert.throws(() => feedDirect(o, bad, 100), { name: 'RecordAuthError' })
    assert.equal(o.readTarget(), null, 'a broken opener offers nowhere to read')
    assert.throws(() => o.wrote(1), { name: 'RecordAuthError' }, 'and stays broken')
    // a header read straight in is checked as a pushed one is: an oversized length is refused before any body
    const [open] = stream([])
    const oversized = Buffer.alloc(RECORD_HEADER_BYTES)
    oversized.writeUInt32LE(4097)
    const checked = opener()
    checked.push(open)
    assert.throws(() => feedDirect(checked, oversized, 1), (err: Error & { kind?: string }) => err.name === 'InvalidMessageError' && err.kind === 'too-large')
    assert.equal(checked.readTarget(), null)
    const fresh = opener()
    fresh.push(bytes.subarray(0, PREAMBLE_BYTES + RECORD_HEADER_BYTES + OPEN_RECORD_BYTES + TAG_BYTES + RECORD_HEADER_BYTES))
    const target = fresh.readTarget()
    assert.ok(target !== null)
    assert.throws(() => fresh.wrote(target.byteLength + 1), RangeError, 'no more than was asked for')
  })

  test('a flipped bit anywhere past the preamble fails the tag (or the length check); nothing is returned', () => {
    const bytes = Buffer.concat(stream(messages))
    for (let at = PREAMBLE_BYTES; at < bytes.byteLength; at += 7) {
      const bad = Buffer.from(bytes)
      bad[at] ^= 0x10
      const o = opener()
      const out: Uint8Array[] = []
      assert.throws(() => { out.push(...o.push(bad)); o.end() }, (err: Error) => ['RecordAuthError', 'InvalidMessageError'].includes(err.name), `byte ${at}`)
      assert.notEqual(o.failure, null)
      // Only records before the damaged one come out, each intact.
      assert.ok(out.length <= messages.length, `byte ${at}`)
      out.forEach((r, i) => { assert.ok(i === 0 || Buffer.from(r).equals(Buffer.concat(messages[i - 1])), `byte ${at}: record ${i} intact`) })
    }
  })

  test('a replayed, dropped or reordered record fails its tag', () => {
    const [open, r1, r2] = stream(messages)
    for (const [what, order] of [['replayed', [open, r1, r1]], ['reordered', [open, r2, r1]], ['dropped', [open, r2]], ['open record replayed', [open, open.subarray(PREAMBLE_BYTES)]]] as const) {
      const o = opener()
      assert.throws(() => { for (const part of order) o.push(part) }, { name: 'RecordAuthError' }, what)
      assert.equal(o.failure?.name, 'RecordAuthError')
      assert.throws(() => o.push(Uint8Array.of(0)), { name: 'RecordAuthError' }, `${what}: stays broken`)
    }
  })

  test('an oversized or empty length is refused before anything is buffered; an unknown session at the preamble', () => {
    const [open] = stream([])
    const header = (length: number): Uint8Array => { const h = Buffer.alloc(RECORD_HEADER_BYTES); h.writeUInt32LE(length); return h }
    for (const length of [4097, 2 ** 31, 0xffff_ffff]) {
      const o = opener()
      o.push(open)
      assert.throws(() => o.push(header(length)), (err: Error & { kind?: string }) => err.name === 'InvalidMessageError' && err.kind === 'too-large', `length ${length}`)
    }
    const empty = opener()
    empty.push(open)
    assert.throws(() => empty.push(header(0)), { name: 'InvalidMessageError' })
    // Record 0 must be exactly the open record.
    assert.throws(() => opener().push(Buffer.concat([encodePreamble(sessionId), header(4000)])), { name: 'InvalidMessageError' })
    assert.throws(() => opener().push(encodePreamble(randomBytes(SESSION_ID_BYTES))), { name: 'UnknownSessionError' })
    assert.throws(() => opener().push(Buffer.concat([Uint8Array.of(9), sessionId])), { name: 'InvalidMessageError' }, 'another version')
    // The open record sealed with another key, or naming another session, does not open.
    const otherKey = randomBytes(32)
    const forged = Buffer.concat(new RecordSealer(otherKey).opening(sessionId))
    assert.throws(() => opener().push(forged), { name: 'RecordAuthError' })
    const otherId = randomBytes(SESSION_ID_BYTES)
    const misnamed = Buffer.concat([encodePreamble(sessionId), ...new RecordSealer(key).opening(otherId).slice(1)])
    assert.throws(() => opener().push(misnamed), { name: 'InvalidMessageError' })
    // A connection that ends inside a record is truncated.
    const cut = opener()
    cut.push(open.subarray(0, open.byteLength - 1))
    assert.throws(() => { cut.end() }, (err: Error & { kind?: string }) => err.kind === 'truncated')
  })
})

/** Forwards connections to a target port, recording what clients send and flipping one byte when asked. */
class Proxy {
  readonly server: Server
  target = 0
  /** Bytes each client connection sent, in order of connection. */
  readonly captured: Buffer[][] = []
  /** Stream offset (in the newest connection) of a byte to flip, once. */
  #flipAt: { connection: number, offset: number } | null = null
  readonly #sent: number[] = []
  readonly #sockets = new Set<Socket>()

  constructor () {
    this.server = createServer(client => {
      const index = this.captured.length
      const captured: Buffer[] = []
      this.captured.push(captured)
      this.#sent.push(0)
      const upstream = createConnection({ host: '127.0.0.1', port: this.target, noDelay: true })
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('error', () => {})
        s.on('close', () => { this.#sockets.delete(s); client.destroy(); upstream.destroy() })
      }
      client.on('data', (chunk: Buffer) => {
        const start = this.#sent[index]
        this.#sent[index] += chunk.byteLength
        const flip = this.#flipAt
        if (flip !== null && flip.connection === index && flip.offset >= start && flip.offset < start + chunk.byteLength) {
          chunk = Buffer.from(chunk)
          chunk[flip.offset - start] ^= 0x01
          this.#flipAt = null
        }
        captured.push(Buffer.from(chunk))
        upstream.write(chunk)
      })
      upstream.on('data', (chunk: Buffer) => { client.write(chunk) })
    })
  }

  async listen (): Promise<number> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    return (this.server.address() as { port: number }).port
  }

  /** Flips the byte `ahead` bytes past what the newest connection has sent so far. */
  flipAhead (ahead: number): void {
    const connection = this.captured.length - 1
    this.#flipAt = { connection, offset: this.#sent[connection] + ahead }
  }

  get flipped (): boolean {
    return this.#flipAt === null
  }

  async close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
  }
}

const newKey = async (): Promise<PrivateKey> => await generateKeyPair('Ed25519') as unknown as PrivateKey

async function swarmNet (psk: Uint8Array | null, allow?: string[]): Promise<Network> {
  const net = await startNetwork({ privateKey: await newKey(), psk, ...(allow !== undefined ? { allow } : {}), listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger })
  stoppers.push(async () => { await net.stop() })
  return net
}

interface Member { id: string, net: Network, transport: KeyedRingTransport, ring: Ring }

let round = 0

async function allReduce (members: Member[], vectors: Float32Array[], timeoutMs = 5000, r = round++, attempt = 0): Promise<AllReduceResult[]> {
  const ids = members.map(m => m.id)
  return await within(Promise.all(members.map(async (m, i) => await m.ring.run({ round: r, attempt, members: ids, self: m.id, vector: vectors[i], stepTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs }))), `round ${r}.${attempt}`, 4 * timeoutMs)
}

/**
 * A round retried as the rounds do it (a new attempt after an abort), up to `attempts` times: a member whose
 * connection was dropped may not have seen the reset yet when the next attempt starts, and then fails that one.
 */
async function allReduceRetried (members: Member[], vectors: Float32Array[], attempts = 3): Promise<{ results: AllReduceResult[], attempts: number }> {
  const r = round++
  let results: AllReduceResult[] = []
  for (let attempt = 0; attempt < attempts; attempt++) {
    results = await allReduce(members, vectors, 2000, r, attempt)
    for (const res of results) if (res.ok) assert.ok(results.every(x => x.ok), 'all or nothing')
    if (results.every(x => x.ok)) return { results, attempts: attempt + 1 }
  }
  return { results, attempts }
}

/** Small integers: every partial sum is exact in float32, whatever order the ring adds in. */
function integerVectors (n: number, length: number, seed: number): Float32Array[] {
  return Array.from({ length: n }, (_, i) => Float32Array.from({ length }, (_, k) => ((k * 7 + i * 13 + seed) % 201) - 100))
}

function assertSums (results: AllReduceResult[], vectors: Float32Array[], what: string): void {
  const expected = new Float32Array(vectors[0].length)
  for (const v of vectors) for (let k = 0; k < v.length; k++) expected[k] += v[k]
  results.forEach((r, i) => {
    assert.ok(r.ok, `${what}: member ${i}: ${r.ok ? '' : `[${r.code}] ${r.reason}`}`)
    assert.deepEqual(Buffer.from(r.sum.buffer, r.sum.byteOffset, r.sum.byteLength), Buffer.from(expected.buffer), `${what}: member ${i} has the sum`)
  })
}

/** Resolves once the server side has dropped this client (the socket closes), within the deadline. */
async function dropped (socket: Socket, what: string): Promise<void> {
  socket.on('error', () => {})
  socket.resume()
  if (!socket.destroyed) await within(new Promise(resolve => { socket.once('close', resolve) }), `${what} dropped`)
}

async function rawClient (port: number): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  await once(socket, 'connect')
  return socket
}

describe('a ring on swarm networks over the keyed data plane', () => {
  const psk = generateSwarmKey()
  let members: Member[] = []
  const proxy = new Proxy()

  before(async () => {
    const proxyPort = await proxy.listen()
    stoppers.push(async () => { await proxy.close() })
    const nets = await Promise.all([0, 1, 2].map(async () => await swarmNet(psk)))
    // Member 1 is reached through the proxy: its predecessor (member 0) connects there.
    members = nets.map((net, i) => {
      const transport = createKeyedRingTransport(net.node, { host: '127.0.0.1', ...(i === 1 ? { announcePort: proxyPort } : {}), ...(ringLog !== undefined ? { logger: ringLog } : {}) })
      return { id: net.peerId, net, transport, ring: new Ring({ transport, ...(ringLog !== undefined ? { logger: ringLog } : {}) }, { blockBytes: BLOCK_BYTES }) }
    })
    for (const m of members) {
      await m.ring.start()
      stoppers.push(async () => { await m.ring.stop() })
    }
    proxy.target = members[1].transport.address().port
    for (const a of members) for (const b of members) if (a !== b) await a.net.learnAddresses(b.id, b.net.addresses())
  })

  test('sums exactly for several sizes and across rounds, on one data connection per neighbour', async () => {
    for (const length of [0, 1, 2, 3, 64, 1000, 10_007, 100_003]) {
      for (let again = 0; again < 2; again++) {
        const vectors = integerVectors(3, length, length + again)
        assertSums(await allReduce(members, vectors), vectors, `length ${length}`)
      }
    }
    for (const m of members) {
      assert.equal(m.transport.counters.accepted, 1, 'one data connection from the predecessor, reused by every round')
      assert.equal(m.transport.counters.sessionsIssued, 1)
      assert.equal(m.transport.counters.refused, 0)
    }
    assert.equal(proxy.captured.length, 1)
    // What the wire carried is not the vectors: the first connection begins with a preamble and sealed records.
    const wire = Buffer.concat(proxy.captured[0])
    const plain = Buffer.from(integerVectors(3, 100_003, 100_003 + 1)[0].buffer)
    assert.equal(wire.indexOf(plain.subarray(4096, 4096 + 64)), -1, 'no plaintext block on the wire')
  })

  test('raw clients on the data port (garbage, an unknown session, a replayed first record) are dropped; the next round succeeds', async () => {
    const port = members[1].transport.address().port
    const refused = members[1].transport.counters.refused

    const garbage = await rawClient(port)
    garbage.write(randomBytes(4096))
    await dropped(garbage, 'garbage')

    const unknown = await rawClient(port)
    unknown.write(Buffer.concat([encodePreamble(randomBytes(SESSION_ID_BYTES)), randomBytes(OPEN_RECORD_BYTES + RECORD_HEADER_BYTES + TAG_BYTES)]))
    await dropped(unknown, 'unknown session')

    // The first record member 0 sent member 1 (captured by the proxy), and everything after it, replayed.
    const first = Buffer.concat(proxy.captured[0])
    const replay = await rawClient(port)
    replay.write(first.subarray(0, PREAMBLE_BYTES + RECORD_HEADER_BYTES + OPEN_RECORD_BYTES + TAG_BYTES))
    await dropped(replay, 'replayed open record')
    const replayAll = await rawClient(port)
    replayAll.write(first)
    await dropped(replayAll, 'replayed connection')

    const silent = await rawClient(port)
    silent.end()
    await dropped(silent, 'a client that sends nothing and ends')

    assert.equal(members[1].transport.counters.refused, refused + 5)
    assert.equal(members[1].transport.counters.accepted, 1, 'no connection was taken for member 0’s')
    const vectors = integerVectors(3, 5000, 1)
    assertSums(await allReduce(members, vectors), vectors, 'after the raw clients')
    assert.equal(members[1].transport.counters.accepted, 1, 'the ring still runs on the first connection')
  })

  test('a flipped byte in a record aborts the round on every member (never a wrong sum); a new connection serves the next', async () => {
    // The connection is idle between rounds, at a record boundary: 200 bytes on is inside the next round's first
    // data record's ciphertext (its hello record is 72 bytes).
    proxy.flipAhead(200)
    const vectors = integerVectors(3, 20_000, 2)
    const results = await allReduce(members, vectors)
    assert.ok(proxy.flipped, 'the proxy flipped a byte')
    for (const [i, r] of results.entries()) {
      assert.equal(r.ok, false, `member ${i} must not return a sum`)
      if (!r.ok) assert.ok(['peer-lost', 'peer-aborted'].includes(r.code), `member ${i}: [${r.code}] ${r.reason}`)
    }
    const lost = results[1]
    assert.ok(!lost.ok && lost.code === 'peer-lost' && lost.culprit === members[0].id, 'member 1 lost its predecessor’s stream')
    assert.equal(members[1].transport.counters.accepted, 1)

    // The ring's retry: member 0 sees its socket closed, agrees on a new session and connects again.
    const again = integerVectors(3, 20_000, 3)
    const { results: after, attempts } = await allReduceRetried(members, again)
    assertSums(after, again, `the round after (${attempts} attempts)`)
    assert.equal(members[1].transport.counters.accepted, 2, 'a second connection, with a new session')
    assert.equal(members[1].transport.counters.sessionsIssued, 2)
    assert.equal(proxy.captured.length, 2)
  })

  test('no session without the swarm key, with another key, or off the allow-list', async () => {
    const target = members[2]
    const addr = multiaddr(target.net.addresses()[0])
    const issued = target.transport.counters.sessionsIssued
    const attempt = async (dial: () => Promise<unknown>): Promise<boolean> => {
      try {
        await dial()
        return true
      } catch {
        return false
      }
    }
    // A stock libp2p node (tcp, noise, yamux), no swarm key.
    const stock: Libp2p = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    stoppers.push(async () => { await stock.stop() })
    assert.equal(await attempt(async () => await stock.dialProtocol(addr, KEY_PROTOCOL, { signal: AbortSignal.timeout(8000) })), false, 'a stock node gets no stream')
    // A swarm node with another key.
    const other = await swarmNet(generateSwarmKey())
    assert.equal(await attempt(async () => await other.node.dialProtocol(addr, KEY_PROTOCOL, { signal: AbortSignal.timeout(8000) })), false, 'another swarm key gets no stream')
    // A holder of the key that a member's allow-list leaves out.
    const guarded = await swarmNet(psk, [members[0].id])
    const guardedTransport = createKeyedRingTransport(guarded.node, { host: '127.0.0.1' })
    await guardedTransport.start()
    stoppers.push(async () => { await guardedTransport.stop() })
    const outsider = await swarmNet(psk)
    assert.equal(await attempt(async () => await outsider.node.dialProtocol(multiaddr(guarded.addresses()[0]), KEY_PROTOCOL, { signal: AbortSignal.timeout(8000) })), false, 'off the allow-list: no stream')
    assert.equal(guardedTransport.counters.sessionsIssued, 0)
    // A holder of the key that is allowed does get one: the protocol is reachable, the refusals above are the network's.
    const insider = await swarmNet(psk)
    assert.equal(await attempt(async () => await insider.node.dialProtocol(addr, KEY_PROTOCOL, { signal: AbortSignal.timeout(8000) })), true, 'a key holder opens the key stream')
    assert.equal(target.transport.counters.sessionsIssued, issued, 'nobody above got a session')
  })
})
