/**
 * All-reduce benchmark: N separate processes on 127.0.0.1, each a ring member, summing vectors of a few sizes.
 *
 *   npx node scripts/bench-allreduce.ts [--sizes 1,16,64] [--peers 2,3,4] [--rounds 5] [--json]
 *
 * For each N and size: the median time of an all-reduce (the slowest member's, after a warm-up round),
 * algbw = size / time and busbw = algbw · 2(N−1)/N (what each link carried per second), for
 *   - ring/libp2p: the ring over libp2p (TCP + noise + yamux), as the swarm runs it;
 *   - ring/plain: the same over libp2p without noise (yamux straight over TCP; a benchmark-only "encrypter");
 *   - ring/tcp: the same ring over plain node:net sockets (reference a: the ring without the libp2p stack);
 * and, between two processes, the throughput of one libp2p stream (with and without noise) and of one plain
 * socket (reference b).
 * Then where the time goes: the adding loop, a memcpy and noise's cipher per vector, measured in a worker.
 */
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cpus, loadavg } from 'node:os'

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,16,64' },
    peers: { type: 'string', default: '2,3,4' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false }
  }
})
const MiB = 1024 * 1024
const sizes = (args.sizes ?? '').split(',').map(Number).filter(x => x > 0)
const peers = (args.peers ?? '').split(',').map(Number).filter(x => x >= 2)
const rounds = Math.max(1, Number(args.rounds))
const workerPath = fileURLToPath(new URL('./bench-allreduce-worker.ts', import.meta.url))

type Libp2pKind = 'libp2p' | 'plain'
interface Worker {
  child: ChildProcess
  ids: Record<Libp2pKind, string>
  addrs: Record<Libp2pKind, string[]>
  tcp: { host: string, port: number }
  next: (type: string) => Promise<any>
}

function spawnWorker (): Promise<Worker> {
  const child = fork(workerPath, [], { execPath: process.execPath, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const queue: any[] = []
  const waiting: Array<{ type: string, resolve: (m: any) => void, reject: (e: Error) => void }> = []
  const deliver = (): void => {
    for (let i = 0; i < waiting.length; i++) {
      const at = queue.findIndex(m => m.type === waiting[i].type)
      if (at >= 0) {
        const [m] = queue.splice(at, 1)
        const [w] = waiting.splice(i, 1)
        w.resolve(m)
        i--
      }
    }
  }
  child.on('message', (m: any) => {
    if (m.type === 'error') {
      for (const w of waiting.splice(0)) w.reject(new Error(m.error))
      return
    }
    queue.push(m)
    deliver()
  })
  child.on('exit', code => { for (const w of waiting.splice(0)) w.reject(new Error(`worker exited with ${code}`)) })
  const next = (type: string): Promise<any> => new Promise((resolve, reject) => { waiting.push({ type, resolve, reject }); deliver() })
  return next('ready').then(m => ({ child, ids: m.ids, addrs: m.addrs, tcp: m.tcp, next }))
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

interface Row { kind: string, n: number, mib: number, ms: number, algbw: number, busbw: number }
const loadBefore = loadavg()[0]
const rows: Row[] = []
const links: Array<{ kind: string, mib: number, ms: number, mbps: number }> = []
let micro: Record<string, number> = {}
let round = 0

for (const n of peers) {
  const workers = await Promise.all(Array.from({ length: n }, spawnWorker))
  for (const w of workers) w.child.send({ type: 'peers', peers: workers.map(x => ({ ids: x.ids, addrs: x.addrs, tcp: x.tcp })) })
  await Promise.all(workers.map(w => w.next('connected')))
  for (const mib of sizes) {
    for (const kind of ['libp2p', 'plain', 'tcp'] as const) {
      const times: number[] = []
      const members = workers.map(w => (kind === 'plain' ? w.ids.plain : w.ids.libp2p))
      for (let i = 0; i <= rounds; i++) {
        const r = round++
        for (const w of workers) w.child.send({ type: 'run', transport: kind, round: r, members, bytes: mib * MiB })
        const results = await Promise.all(workers.map(w => w.next('ran')))
        const failed = results.find(x => !x.ok)
        if (failed !== undefined) throw new Error(`${kind} N=${n} ${mib} MiB round failed: ${failed.reason}`)
        if (i > 0) times.push(Math.max(...results.map(x => x.ms)))
      }
      const ms = median(times)
      const algbw = mib * MiB / (ms / 1000)
      rows.push({ kind: `ring/${kind}`, n, mib, ms, algbw, busbw: algbw * 2 * (n - 1) / n })
      process.stderr.write(`ring/${kind} N=${n} ${mib} MiB: ${ms.toFixed(1)} ms\n`)
    }
    if (n === peers[0]) {
      // Reference b: one link between two processes: one libp2p stream (with and without noise), one socket.
      const [a, b] = workers
      const streamTimes: number[] = []
      const plainTimes: number[] = []
      const socketTimes: number[] = []
      b.child.send({ type: 'socket-listen' })
      const { port } = await b.next('listening')
      for (let i = 0; i <= rounds; i++) {
        a.child.send({ type: 'stream-send', kind: 'libp2p', to: b.ids.libp2p, bytes: mib * MiB })
        const s = await a.next('streamed')
        a.child.send({ type: 'stream-send', kind: 'plain', to: b.ids.plain, bytes: mib * MiB })
        const p = await a.next('streamed')
        a.child.send({ type: 'socket-send', port, bytes: mib * MiB })
        const t = await a.next('socketed')
        if (i > 0) { streamTimes.push(s.ms); plainTimes.push(p.ms); socketTimes.push(t.ms) }
      }
      for (const [kind, times] of [['libp2p stream', streamTimes], ['yamux, no noise', plainTimes], ['tcp socket', socketTimes]] as const) {
        const ms = median(times)
        links.push({ kind, mib, ms, mbps: mib * MiB / (ms / 1000) })
      }
    }
  }
  if (n === peers[0]) {
    workers[0].child.send({ type: 'micro', bytes: Math.max(...sizes) * MiB })
    micro = await workers[0].next('micro')
  }
  for (const w of workers) w.child.send({ type: 'exit' })
  await Promise.all(workers.map(w => new Promise(resolve => { w.child.once('exit', resolve) })))
}

const MB = (bps: number): string => (bps / 1e6).toFixed(0).padStart(7)
if (args.json === true) {
  console.log(JSON.stringify({ cpus: cpus().length, load: [loadBefore, loadavg()[0]], rows, links, micro }, null, 2))
} else {
  console.log(`\nall-reduce on 127.0.0.1, ${cpus().length} CPUs, median of ${rounds} rounds (slowest member), MB = 10^6 bytes`)
  console.log(`load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after (other processes share these CPUs: compare within a run, not across runs)\n`)
  console.log('ring over    N   size     ms      algbw MB/s  busbw MB/s')
  for (const r of rows) {
    console.log(`${r.kind.padEnd(12)} ${String(r.n).padStart(1)}  ${`${r.mib} MiB`.padStart(7)} ${r.ms.toFixed(1).padStart(8)}  ${MB(r.algbw)}     ${MB(r.busbw)}`)
  }
  console.log('\none link between two processes (reference b)')
  for (const l of links) console.log(`${l.kind.padEnd(16)} ${`${l.mib} MiB`.padStart(7)} ${l.ms.toFixed(1).padStart(8)} ms  ${MB(l.mbps)} MB/s`)
  console.log('\nratios (busbw)')
  for (const r of rows.filter(x => x.kind === 'ring/libp2p')) {
    const tcpRow = rows.find(x => x.kind === 'ring/tcp' && x.n === r.n && x.mib === r.mib)
    const stream = links.find(l => l.kind === 'libp2p stream' && l.mib === r.mib)
    const plainRow = rows.find(x => x.kind === 'ring/plain' && x.n === r.n && x.mib === r.mib)
    const parts = [`N=${r.n} ${String(r.mib).padStart(2)} MiB: libp2p ring / tcp ring = ${tcpRow === undefined ? '-' : (r.busbw / tcpRow.busbw).toFixed(2)}`]
    if (stream !== undefined) parts.push(`libp2p ring / one libp2p stream = ${(r.busbw / stream.mbps).toFixed(2)}`)
    if (plainRow !== undefined) parts.push(`libp2p ring / no-noise ring = ${(r.busbw / plainRow.busbw).toFixed(2)}`)
    console.log(parts.join('   '))
  }
  const maxMiB = Math.max(...sizes)
  if (micro.addMs !== undefined) {
    console.log(`\nlocal costs for one ${maxMiB} MiB vector (one core)`)
    console.log(`  checked add (NaN/Inf test + add)  ${micro.addMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.addMs / 1000))} MB/s)`)
    console.log(`  plain add                         ${micro.plainAddMs.toFixed(1)} ms`)
    console.log(`  memcpy (Float32Array.set)         ${micro.copyMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.copyMs / 1000))} MB/s)`)
    console.log(`  chacha20-poly1305 enc+dec (noise) ${micro.cipherMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.cipherMs / 1000))} MB/s)`)
  }
}
