/**
 * One member of `bench-allreduce`: a process with every data path the benchmark compares, driven by the parent
 * over IPC. Not meant to be run by hand.
 *
 * - `swarm`: the network `peer start` runs (`startNetwork`: pnet with the swarm key, noise, yamux, gossipsub…)
 *   and the ring transport `peer start` uses on it (the keyed TCP data plane, AES-256-GCM);
 * - `libp2p-pnet`: the ring over libp2p streams on that same network (the data path before the keyed one);
 * - `keyed-chacha`: the keyed data plane with ChaCha20-Poly1305 records, on a second swarm network;
 * - `libp2p`: the ring over libp2p streams without the swarm key (TCP, noise, yamux);
 * - `plain`: the same without noise (yamux straight over TCP, to tell the cipher's cost from the muxer's);
 * - `tcp`: the plain `node:net` ring transport (no security at all: the reference).
 *
 * Messages from the parent: `peers` (everyone's addresses: connect to all), `run` (one all-reduce round),
 * `stream-send` / `stream-recv` and `socket-send` / `socket-recv` (single-link throughput references),
 * `micro` (the local costs: adding loop, memcpy, encryption), `exit`.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { createConnection, createServer } from 'node:net'
import { once } from 'node:events'
import { pino } from 'pino'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ConnectionEncrypter, PeerId, PrivateKey, SecureConnectionOptions } from '@libp2p/interface'
import { pushable } from 'it-pushable'
import { multiaddr } from '@multiformats/multiaddr'
import { startNetwork } from '../node/network/index.ts'
import { KEYED_BLOCK_BYTES, Ring, createKeyedRingTransport, createLibp2pRingTransport, createTcpRingTransport, listenHostOf, sumBuffer, simdKernelsOf } from '../node/ring/index.ts'
import type { TcpAddress } from '../node/ring/index.ts'
import { addChecked } from '../node/ring/index.ts'
import { MAX_FRAME_BYTES } from '../protocols/allreduce/index.ts'
import { RecordOpener, RecordSealer } from '../protocols/ring-key/index.ts'
import type { RecordCipher } from '../protocols/ring-key/index.ts'

const STREAM_PROTOCOL = '/peer/bench-stream/1.0.0'

/**
 * A connection "encrypter" that only swaps peer ids: yamux straight over TCP, to tell noise's cost from the
 * muxer's. Benchmark only: it authenticates nothing.
 */
function plaintext (): (components: { peerId: PeerId }) => ConnectionEncrypter {
  return ({ peerId: self }) => {
    const secure = async (connection: any, options: SecureConnectionOptions | undefined): Promise<any> => {
      const out = pushable<Uint8Array>()
      void connection.sink(out).catch(() => {})
      const id = new TextEncoder().encode(self.toString())
      out.push(Uint8Array.from([id.byteLength, ...id]))
      const source: AsyncIterator<Uint8Array | Iterable<Uint8Array>> = connection.source[Symbol.asyncIterator]()
      let buffered = new Uint8Array(0)
      while (buffered.byteLength < 1 || buffered.byteLength < 1 + buffered[0]) {
        const next = await source.next()
        if (next.done === true) throw new Error('connection closed during the id exchange')
        for (const part of next.value instanceof Uint8Array ? [next.value] : next.value) {
          const merged = new Uint8Array(buffered.byteLength + part.byteLength)
          merged.set(buffered)
          merged.set(part, buffered.byteLength)
          buffered = merged
        }
      }
      const remotePeer = peerIdFromString(new TextDecoder().decode(buffered.subarray(1, 1 + buffered[0])))
      if (options?.remotePeer !== undefined && !options.remotePeer.equals(remotePeer)) throw new Error('unexpected peer')
      const rest = buffered.subarray(1 + buffered[0])
      connection.source = (async function * () {
        if (rest.byteLength > 0) yield rest
        while (true) {
          const next = await source.next()
          if (next.done === true) return
          yield next.value
        }
      })()
      connection.sink = async (src: AsyncIterable<Uint8Array | { subarray: () => Uint8Array }>) => {
        for await (const chunk of src) out.push(chunk instanceof Uint8Array ? chunk : chunk.subarray())
        out.end()
      }
      return { remotePeer, conn: connection }
    }
    return {
      protocol: '/plaintext-bench/1.0.0',
      secureOutbound: secure,
      secureInbound: secure
    } as unknown as ConnectionEncrypter
  }
}
const CHUNK = 256 * 1024

export type Kind = 'swarm' | 'swarm-bf16' | 'swarm-reduce' | 'libp2p-pnet' | 'keyed-chacha' | 'libp2p' | 'plain' | 'tcp'
/** The libp2p nodes of a worker: `swarm` carries the swarm, libp2p-pnet and tcp rings, `chacha` the keyed-chacha one. */
type NodeName = 'swarm' | 'bf16' | 'reduce' | 'chacha' | 'libp2p' | 'plain'
const NODE_OF: Record<Kind, NodeName> = { swarm: 'swarm', 'swarm-bf16': 'bf16', 'swarm-reduce': 'reduce', 'libp2p-pnet': 'swarm', 'keyed-chacha': 'chacha', libp2p: 'libp2p', plain: 'plain', tcp: 'swarm' }

/** Each peer's ids and addresses: its libp2p nodes and its TCP ring listener. */
interface PeerInfo { ids: Record<NodeName, string>, addrs: Record<NodeName, string[]>, tcp: TcpAddress }

type Message =
  | { type: 'peers', peers: PeerInfo[] }
  | { type: 'run', transport: Kind, round: number, members: string[], bytes: number }
  | { type: 'stream-send', kind: 'libp2p' | 'plain', to: string, bytes: number }
  | { type: 'socket-listen' }
  | { type: 'socket-send', port: number, bytes: number }
  | { type: 'micro', bytes: number }
  | { type: 'exit' }

const send = (msg: unknown): void => { process.send?.(msg) }

const LISTEN = ['/ip4/127.0.0.1/tcp/0']
const psk = Buffer.from(process.env.BENCH_SWARM_KEY ?? '', 'hex')
if (psk.byteLength !== 32) throw new Error('BENCH_SWARM_KEY must be 32 bytes of hex')
const logger = pino({ level: 'silent' })
const swarmNetwork = async (): Promise<Libp2p> => (await startNetwork({
  privateKey: await generateKeyPair('Ed25519') as unknown as PrivateKey, psk, listen: LISTEN, join: [], mdns: false, logger
})).node as unknown as Libp2p
const nodes: Record<NodeName, Libp2p> = {
  swarm: await swarmNetwork(),
  bf16: await swarmNetwork(),
  reduce: await swarmNetwork(),
  chacha: await swarmNetwork(),
  libp2p: await createLibp2p({ addresses: { listen: LISTEN }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] }),
  plain: await createLibp2p({ addresses: { listen: LISTEN }, transports: [tcp()], connectionEncrypters: [plaintext()], streamMuxers: [yamux()] })
}
const ids = Object.fromEntries(Object.entries(nodes).map(([name, node]) => [name, node.peerId.toString()])) as Record<NodeName, string>
const tcpAddresses = new Map<string, TcpAddress>()
const tcpTransport = createTcpRingTransport({ self: ids.swarm, resolve: peer => tcpAddresses.get(peer) })
const patience = { stepTimeoutMs: 60_000, connectTimeoutMs: 60_000 }
const rings: Record<Kind, Ring> = {
  // Exactly what node/peer wires up for `peer start`.
  swarm: new Ring({ transport: createKeyedRingTransport(nodes.swarm, { host: listenHostOf(LISTEN) }) }, patience),
  // the same with a job's `compression: bf16` (its last 3 elements float32, as a job's counts)
  'swarm-bf16': new Ring({ transport: createKeyedRingTransport(nodes.bf16, { host: listenHostOf(LISTEN) }) }, patience),
  // the same, every round reducing chunks (never gathering whole vectors): what the swarm did before wire version 2
  'swarm-reduce': new Ring({ transport: createKeyedRingTransport(nodes.reduce, { host: listenHostOf(LISTEN) }) }, { ...patience, gatherMaxBytes: 0 }),
  'libp2p-pnet': new Ring({ transport: createLibp2pRingTransport(nodes.swarm) }, patience),
  'keyed-chacha': new Ring({ transport: createKeyedRingTransport(nodes.chacha, { host: listenHostOf(LISTEN), cipher: 'chacha20-poly1305' }) }, patience),
  libp2p: new Ring({ transport: createLibp2pRingTransport(nodes.libp2p) }, patience),
  plain: new Ring({ transport: createLibp2pRingTransport(nodes.plain) }, patience),
  tcp: new Ring({ transport: tcpTransport }, patience)
}
for (const ring of Object.values(rings)) await ring.start()

// Single-stream reference: the receiver reads everything and answers one byte.
for (const node of [nodes.libp2p, nodes.plain]) {
  await node.handle(STREAM_PROTOCOL, ({ stream }) => {
    void (async () => {
      let expected = -1
      let got = 0
      for await (const chunk of stream.source) {
        if (expected < 0) expected = new DataView(chunk.subarray(0, 8).buffer, chunk.subarray(0, 8).byteOffset).getFloat64(0, true)
        got += chunk.byteLength
        if (got >= expected + 8) break
      }
      await stream.sink([new Uint8Array([1])])
    })()
  }, { maxInboundStreams: 4 })
}

const vectors = new Map<number, Float32Array>()
const vectorOf = (bytes: number): Float32Array => {
  let v = vectors.get(bytes)
  if (v === undefined) {
    v = new Float32Array(bytes / 4)
    for (let k = 0; k < v.length; k++) v[k] = (k % 1000) / 1000
    vectors.set(bytes, v)
  }
  return v
}

/** The sum buffers, one per size, reused by every round (as the rounds' `into`). */
const sums = new Map<number, Float32Array>()

let socketServer: ReturnType<typeof createServer> | undefined

process.on('message', (msg: Message) => {
  void handle(msg).catch((err: Error) => { send({ type: 'error', error: err.stack ?? String(err) }) })
})
const me: PeerInfo = {
  ids,
  addrs: Object.fromEntries(Object.entries(nodes).map(([name, node]) => [name, node.getMultiaddrs().map(a => a.toString())])) as Record<NodeName, string[]>,
  tcp: tcpTransport.address()
}
send({ type: 'ready', ...me })

async function handle (msg: Message): Promise<void> {
  switch (msg.type) {
    case 'peers': {
      const index = msg.peers.findIndex(p => p.ids.swarm === ids.swarm)
      for (const name of Object.keys(nodes) as NodeName[]) {
        for (const p of msg.peers) {
          tcpAddresses.set(p.ids.swarm, p.tcp)
          if (p.ids[name] === ids[name]) continue
          await nodes[name].peerStore.merge(peerIdFromString(p.ids[name]), { multiaddrs: p.addrs[name].map(a => multiaddr(a)) })
        }
        // Connect to those after us; those before us connect to us.
        for (const p of msg.peers.slice(index + 1)) await nodes[name].dial(peerIdFromString(p.ids[name]))
      }
      send({ type: 'connected' })
      return
    }
    case 'run': {
      const vector = vectorOf(msg.bytes)
      const self = ids[NODE_OF[msg.transport]]
      const cpu = process.cpuUsage()
      // As the rounds do: the sum goes into a buffer kept from round to round.
      const into = sums.get(msg.bytes) ?? sumBuffer(msg.bytes / 4)
      sums.set(msg.bytes, into)
      const wire = msg.transport === 'swarm-bf16' ? { compression: 'bf16' as const, exact: Math.min(3, vector.length) } : {}
      const result = await rings[msg.transport].run({ round: msg.round, attempt: 0, members: msg.members, self, vector, into, ...wire })
      const used = process.cpuUsage(cpu)
      send({ type: 'ran', ok: result.ok, ms: result.stats.ms, cpuMs: (used.user + used.system) / 1000, reason: result.ok ? undefined : result.reason })
      return
    }
    case 'stream-send': {
      const stream = await nodes[msg.kind].dialProtocol(peerIdFromString(msg.to), STREAM_PROTOCOL)
      const block = new Uint8Array(CHUNK).fill(7)
      const header = new Uint8Array(8)
      new DataView(header.buffer).setFloat64(0, msg.bytes, true)
      const started = performance.now()
      const source = (async function * () {
        yield header
        for (let sent = 0; sent < msg.bytes; sent += CHUNK) yield block.subarray(0, Math.min(CHUNK, msg.bytes - sent))
      })()
      const ack = (async () => { for await (const _ of stream.source) break })()
      await stream.sink(source)
      await ack
      send({ type: 'streamed', ms: performance.now() - started })
      await stream.close().catch(() => {})
      return
    }
    case 'socket-listen': {
      socketServer = createServer(socket => {
        let got = 0
        let expected = -1
        socket.on('data', (chunk: Buffer) => {
          if (expected < 0) expected = chunk.readDoubleLE(0)
          got += chunk.byteLength
          if (got >= expected + 8) socket.end(Buffer.from([1]))
        })
      })
      socketServer.listen(0, '127.0.0.1')
      await once(socketServer, 'listening')
      const address = socketServer.address()
      send({ type: 'listening', port: typeof address === 'object' && address !== null ? address.port : 0 })
      return
    }
    case 'socket-send': {
      const socket = createConnection({ host: '127.0.0.1', port: msg.port, noDelay: true })
      await once(socket, 'connect')
      const block = Buffer.alloc(CHUNK, 7)
      const header = Buffer.alloc(8)
      header.writeDoubleLE(msg.bytes, 0)
      const started = performance.now()
      const acked = once(socket, 'data')
      socket.write(header)
      for (let sent = 0; sent < msg.bytes; sent += CHUNK) {
        if (!socket.write(block.subarray(0, Math.min(CHUNK, msg.bytes - sent)))) await once(socket, 'drain')
      }
      await acked
      send({ type: 'socketed', ms: performance.now() - started })
      socket.destroy()
      return
    }
    case 'micro': {
      send({ type: 'micro', ...micro(msg.bytes) })
      return
    }
    case 'exit': {
      // a stop that hangs (a dial still under way) must not keep the benchmark waiting
      setTimeout(() => process.exit(0), 2000).unref()
      for (const ring of Object.values(rings)) await ring.stop()
      socketServer?.close()
      for (const node of Object.values(nodes)) await node.stop()
      process.exit(0)
    }
  }
}

/** Local costs per byte of vector: the checked adding loop (JavaScript, SIMD), a memcpy, and the ciphers both ways. */
function micro (bytes: number): Record<string, number> {
  const a = vectorOf(bytes).slice()
  const b = vectorOf(bytes)
  const time = (fn: () => void, reps = 3): number => {
    fn()
    const runs: number[] = []
    for (let i = 0; i < reps; i++) {
      const t = performance.now()
      fn()
      runs.push(performance.now() - t)
    }
    return runs.sort((x, y) => x - y)[Math.floor(reps / 2)]
  }
  const add = time(() => { addChecked(a, 0, b) })
  const copy = time(() => { a.set(b) })
  const plainAdd = time(() => { for (let k = 0; k < a.length; k++) a[k] += b[k] })
  // The receiver's SIMD path (a sum buffer): input + block into the sum, 256 KiB blocks, each copied in first.
  const sum = sumBuffer(a.length)
  const kernels = simdKernelsOf(sum)
  const block = 256 * 1024
  const bBytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
  const simdAdd = kernels === null ? NaN : time(() => { for (let at = 0; at < bytes; at += block) kernels.addFrom(at / 4, a, bBytes.subarray(at, at + block)) })
  // ChaCha20-Poly1305 as noise uses it: node:crypto, 64 KiB messages, encrypt then decrypt.
  const key = randomBytes(32)
  const nonce = Buffer.alloc(12)
  const message = Buffer.from(b.buffer, b.byteOffset, Math.min(bytes, 16 * 1024 * 1024))
  const cipherMs = time(() => {
    for (let at = 0; at < message.byteLength; at += 65519) {
      const chunk = message.subarray(at, at + 65519)
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
      const encrypted = Buffer.concat([c.update(chunk), c.final()])
      const tag = c.getAuthTag()
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
      d.setAuthTag(tag)
      d.update(encrypted)
      d.final()
    }
  }, 1) * (bytes / message.byteLength)
  // The keyed data plane's records as the ring sends them (a 24-byte header and a KEYED_BLOCK_BYTES block each):
  // sealed, then opened, with each cipher.
  const records = (cipher: RecordCipher): number => {
    const key = randomBytes(32)
    const sessionId = randomBytes(16)
    const header = new Uint8Array(24)
    const block = KEYED_BLOCK_BYTES
    return time(() => {
      const sealer = new RecordSealer(key, { cipher, maxRecordBytes: MAX_FRAME_BYTES })
      const opener = new RecordOpener({ cipher, maxRecordBytes: MAX_FRAME_BYTES, keyFor: () => key })
      opener.push(Buffer.concat(sealer.opening(sessionId)))
      for (let at = 0; at < bytes; at += block) {
        const sealed = sealer.seal([header, new Uint8Array(b.buffer, b.byteOffset + at, Math.min(block, bytes - at))])
        for (const part of sealed) opener.push(part)
      }
    })
  }
  return { addMs: add, plainAddMs: plainAdd, simdAddMs: simdAdd, copyMs: copy, cipherMs, aesGcmRecordsMs: records('aes-256-gcm'), chachaRecordsMs: records('chacha20-poly1305') }
}
