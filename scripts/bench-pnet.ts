/**
 * What the private network costs: the swarm key adds libp2p's pre-shared key layer (XSalsa20, in JavaScript)
 * under noise, so every byte is encrypted twice. This measures, with the project's own network stack
 * (`startNetwork`: TCP, pnet, noise, yamux with the ring's windows) in separate processes on 127.0.0.1:
 *   - one libp2p stream between two processes, open swarm vs private swarm;
 *   - the ring all-reduce (our Ring over libp2p streams) for N members and a few vector sizes, both ways;
 *   - the cipher alone on one core (XSalsa20 as pnet runs it, ChaCha20-Poly1305 as noise does).
 *
 *   npx node scripts/bench-pnet.ts [--sizes 16,64] [--peers 2,4] [--rounds 5] [--stream-mib 256] [--json]
 *
 * Numbers assert nothing; the machines are shared, so compare within one run (the modes alternate per size).
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createCipheriv, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const MiB = 1024 * 1024
const STREAM_PROTOCOL = '/peer/bench-pnet/1.0.0'
const CHUNK = 256 * 1024

type Mode = 'open' | 'psk'

if (process.argv.includes('--worker')) {
  await worker()
} else {
  await main()
}

async function main (): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      sizes: { type: 'string', default: '16,64' },
      peers: { type: 'string', default: '2,4' },
      rounds: { type: 'string', default: '5' },
      'stream-mib': { type: 'string', default: '256' },
      json: { type: 'boolean', default: false }
    }
  })
  const sizes = (args.sizes ?? '').split(',').map(Number).filter(x => x > 0)
  const peers = (args.peers ?? '').split(',').map(Number).filter(x => x >= 2)
  const rounds = Math.max(1, Number(args.rounds))
  const streamMiB = Math.max(1, Number(args['stream-mib']))
  const loadBefore = loadavg()[0]
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const key = new Uint8Array(randomBytes(32))
  const self = fileURLToPath(import.meta.url)

  interface Worker { child: ChildProcess, id: string, addrs: string[], next: (type: string) => Promise<any> }
  const spawnWorker = async (mode: Mode): Promise<Worker> => {
    const child = fork(self, ['--worker'], { execPath: process.execPath, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const queue: any[] = []
    const waiting: Array<{ type: string, resolve: (m: any) => void, reject: (e: Error) => void }> = []
    const deliver = (): void => {
      for (let i = 0; i < waiting.length; i++) {
        const at = queue.findIndex(m => m.type === waiting[i].type)
        if (at < 0) continue
        const [m] = queue.splice(at, 1)
        waiting.splice(i--, 1)[0].resolve(m)
      }
    }
    child.on('message', (m: any) => {
      if (m.type === 'error') { for (const w of waiting.splice(0)) w.reject(new Error(m.error)); return }
      queue.push(m)
      deliver()
    })
    child.on('exit', code => { for (const w of waiting.splice(0)) w.reject(new Error(`worker exited with ${code}`)) })
    const next = async (type: string): Promise<any> => await new Promise((resolve, reject) => { waiting.push({ type, resolve, reject }); deliver() })
    child.send({ type: 'init', psk: mode === 'psk' ? key : null })
    const ready = await next('ready')
    return { child, id: ready.id, addrs: ready.addrs, next }
  }
  const stopAll = async (workers: Worker[]): Promise<void> => {
    for (const w of workers) w.child.send({ type: 'exit' })
    await Promise.all(workers.map(async w => await new Promise(resolve => { if (w.child.exitCode !== null) resolve(null); else w.child.once('exit', resolve) })))
  }

  const links: Array<{ mode: Mode, mib: number, ms: number, mbps: number }> = []
  const rows: Array<{ mode: Mode, n: number, mib: number, ms: number, algbw: number, busbw: number }> = []

  // one stream between two processes, the modes alternating so that load changes hit both alike
  const pairs = { open: await Promise.all([spawnWorker('open'), spawnWorker('open')]), psk: await Promise.all([spawnWorker('psk'), spawnWorker('psk')]) }
  for (const mode of ['open', 'psk'] as const) {
    const [a, b] = pairs[mode]
    a.child.send({ type: 'connect', peers: [{ id: b.id, addrs: b.addrs }] })
    await a.next('connected')
  }
  const streamTimes: Record<Mode, number[]> = { open: [], psk: [] }
  for (let i = 0; i <= rounds; i++) {
    for (const mode of ['open', 'psk'] as const) {
      const [a, b] = pairs[mode]
      a.child.send({ type: 'stream-send', to: b.id, bytes: streamMiB * MiB })
      const r = await a.next('streamed')
      if (i > 0) streamTimes[mode].push(r.ms)
    }
  }
  for (const mode of ['open', 'psk'] as const) {
    const ms = median(streamTimes[mode])
    links.push({ mode, mib: streamMiB, ms, mbps: streamMiB * MiB / (ms / 1000) })
    process.stderr.write(`stream ${mode}: ${ms.toFixed(0)} ms for ${streamMiB} MiB\n`)
  }
  await stopAll([...pairs.open, ...pairs.psk])

  // the ring all-reduce
  let round = 0
  for (const n of peers) {
    const groups = { open: await Promise.all(Array.from({ length: n }, async () => await spawnWorker('open'))), psk: await Promise.all(Array.from({ length: n }, async () => await spawnWorker('psk'))) }
    for (const mode of ['open', 'psk'] as const) {
      const ws = groups[mode]
      ws.forEach((w, i) => { w.child.send({ type: 'connect', peers: ws.slice(i + 1).map(x => ({ id: x.id, addrs: x.addrs })) }) })
      await Promise.all(ws.map(async w => await w.next('connected')))
    }
    for (const mib of sizes) {
      const times: Record<Mode, number[]> = { open: [], psk: [] }
      for (let i = 0; i <= rounds; i++) {
        for (const mode of ['open', 'psk'] as const) {
          const ws = groups[mode]
          const r = round++
          for (const w of ws) w.child.send({ type: 'run', round: r, members: ws.map(x => x.id), bytes: mib * MiB })
          const results = await Promise.all(ws.map(async w => await w.next('ran')))
          const failed = results.find(x => !x.ok)
          if (failed !== undefined) throw new Error(`${mode} N=${n} ${mib} MiB: ${failed.reason}`)
          if (i > 0) times[mode].push(Math.max(...results.map(x => x.ms)))
        }
      }
      for (const mode of ['open', 'psk'] as const) {
        const ms = median(times[mode])
        const algbw = mib * MiB / (ms / 1000)
        rows.push({ mode, n, mib, ms, algbw, busbw: algbw * 2 * (n - 1) / n })
        process.stderr.write(`ring ${mode} N=${n} ${mib} MiB: ${ms.toFixed(1)} ms\n`)
      }
    }
    await stopAll([...groups.open, ...groups.psk])
  }

  const cipher = cipherCosts(64 * MiB)
  const MB = (bps: number): string => (bps / 1e6).toFixed(0).padStart(6)
  if (args.json === true) {
    console.log(JSON.stringify({ cpus: cpus().length, load: [loadBefore, loadavg()[0]], links, rows, cipher }, null, 2))
    return
  }
  console.log(`\nprivate network (pre-shared key) vs open swarm, our network stack, 127.0.0.1, ${cpus().length} CPUs, median of ${rounds}; MB = 10^6 bytes`)
  console.log(`load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after (shared machine: compare within this run)\n`)
  console.log('one libp2p stream')
  for (const l of links) console.log(`  ${l.mode.padEnd(5)} ${`${l.mib} MiB`.padStart(8)} ${l.ms.toFixed(0).padStart(7)} ms  ${MB(l.mbps)} MB/s`)
  const [o, p] = [links.find(l => l.mode === 'open')!, links.find(l => l.mode === 'psk')!]
  console.log(`  psk / open = ${(p.mbps / o.mbps).toFixed(2)}`)
  console.log('\nring all-reduce          ms   algbw MB/s  busbw MB/s   psk/open busbw')
  for (const r of rows.filter(x => x.mode === 'open')) {
    const q = rows.find(x => x.mode === 'psk' && x.n === r.n && x.mib === r.mib)!
    for (const x of [r, q]) {
      console.log(`  ${x.mode.padEnd(5)} N=${x.n} ${`${x.mib} MiB`.padStart(7)} ${x.ms.toFixed(1).padStart(8)}  ${MB(x.algbw)}      ${MB(x.busbw)}${x === q ? `       ${(q.busbw / r.busbw).toFixed(2)}` : ''}`)
    }
  }
  console.log('\none core, 64 MiB:')
  console.log(`  xsalsa20 (pnet), encrypt or decrypt   ${MB(cipher.xsalsa20)} MB/s`)
  console.log(`  chacha20-poly1305 (noise), encrypt    ${MB(cipher.chacha)} MB/s`)
}

/** The two ciphers alone, one core: bytes per second of one pass. */
function cipherCosts (bytes: number): { xsalsa20: number, chacha: number } {
  const data = new Uint8Array(randomBytes(bytes))
  // pnet's box stream: xsalsa20 xor, 64 KiB chunks (what noise hands down), copied as pnet does
  // (the cipher @libp2p/pnet depends on, resolved from there)
  const xsalsa20 = createRequire(import.meta.resolve('@libp2p/pnet'))('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array }
  const xor = xsalsa20(new Uint8Array(randomBytes(24)), new Uint8Array(randomBytes(32)))
  let t = performance.now()
  for (let at = 0; at < bytes; at += 64 * 1024) Uint8Array.from(xor.update(data.subarray(at, at + 64 * 1024)))
  const xs = bytes / ((performance.now() - t) / 1000)
  const key = randomBytes(32)
  t = performance.now()
  for (let at = 0, n = 0; at < bytes; at += 64 * 1024, n++) {
    const iv = Buffer.alloc(12)
    iv.writeUInt32LE(n, 4)
    const c = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 })
    c.update(data.subarray(at, at + 64 * 1024))
    c.final()
    c.getAuthTag()
  }
  return { xsalsa20: xs, chacha: bytes / ((performance.now() - t) / 1000) }
}

async function worker (): Promise<void> {
  const [{ pino }, { generateKeyPair }, { peerIdFromString }, { multiaddr }, { startNetwork }, { Ring, createLibp2pRingTransport }] = await Promise.all([
    import('pino'), import('@libp2p/crypto/keys'), import('@libp2p/peer-id'), import('@multiformats/multiaddr'),
    import('../node/network/index.ts'), import('../node/ring/index.ts')
  ])
  const send = (msg: unknown): void => { process.send?.(msg) }
  let network: Awaited<ReturnType<typeof startNetwork>> | undefined
  let ring: InstanceType<typeof Ring> | undefined
  const vectors = new Map<number, Float32Array>()
  process.on('message', (msg: any) => {
    void handle(msg).catch((err: Error) => { send({ type: 'error', error: err.stack ?? String(err) }) })
  })
  async function handle (msg: any): Promise<void> {
    switch (msg.type) {
      case 'init': {
        network = await startNetwork({
          privateKey: await generateKeyPair('Ed25519') as never,
          psk: msg.psk,
          listen: ['/ip4/127.0.0.1/tcp/0'],
          join: [],
          mdns: false,
          logger: pino({ level: 'silent' })
        })
        ring = new Ring({ transport: createLibp2pRingTransport(network.node) }, { stepTimeoutMs: 60_000, connectTimeoutMs: 60_000 })
        await ring.start()
        await network.node.handle(STREAM_PROTOCOL, ({ stream }) => {
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
        send({ type: 'ready', id: network.peerId, addrs: network.addresses() })
        return
      }
      case 'connect': {
        for (const p of msg.peers) {
          await network!.node.peerStore.merge(peerIdFromString(p.id), { multiaddrs: p.addrs.map((a: string) => multiaddr(a)) })
          await network!.dial(p.id)
        }
        send({ type: 'connected' })
        return
      }
      case 'stream-send': {
        const stream = await network!.node.dialProtocol(peerIdFromString(msg.to), STREAM_PROTOCOL)
        const block = new Uint8Array(CHUNK).fill(7)
        const header = new Uint8Array(8)
        new DataView(header.buffer).setFloat64(0, msg.bytes, true)
        const started = performance.now()
        const ack = (async () => { for await (const _ of stream.source) break })()
        await stream.sink((async function * () {
          yield header
          for (let sent = 0; sent < msg.bytes; sent += CHUNK) yield block.subarray(0, Math.min(CHUNK, msg.bytes - sent))
        })())
        await ack
        send({ type: 'streamed', ms: performance.now() - started })
        await stream.close().catch(() => {})
        return
      }
      case 'run': {
        let vector = vectors.get(msg.bytes)
        if (vector === undefined) {
          vector = new Float32Array(msg.bytes / 4)
          for (let k = 0; k < vector.length; k++) vector[k] = (k % 1000) / 1000
          vectors.set(msg.bytes, vector)
        }
        const result = await ring!.run({ round: msg.round, attempt: 0, members: msg.members, self: network!.peerId, vector })
        send({ type: 'ran', ok: result.ok, ms: result.stats.ms, reason: result.ok ? undefined : result.reason })
        return
      }
      case 'exit': {
        await ring?.stop()
        await network?.stop()
        process.exit(0)
      }
    }
  }
}
