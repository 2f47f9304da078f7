/**
 * All-reduce benchmark: N separate processes on 127.0.0.1, each a ring member, summing vectors of a few sizes.
 *
 *   npx node scripts/bench-allreduce.ts [--sizes 1,16,64] [--peers 2,3,4] [--rounds 5] [--kinds swarm,gloo,…] [--no-gloo] [--json]
 *
 * For each N and size: the median time of an all-reduce (the slowest member's, after warm-up rounds),
 * algbw = size / time and busbw = algbw · 2(N−1)/N (what each link carried per second), for
 *   - swarm: exactly the data path `peer start` uses by default: the swarm's libp2p network (swarm key on) for
 *     the key exchange, the keyed TCP data plane (AES-256-GCM records) for the bytes;
 *   - ring/swarm-bf16: the same data path with a job's `compression: bf16` (bfloat16 on the wire but for the last
 *     3 elements, a job's counts; busbw still counts float32 bytes, so it is what the job's sum gets done at);
 *   - ring/swarm-reduce: the same, every round reducing chunks (small vectors gather whole vectors by default:
 *     N − 1 hops instead of 2(N − 1); this row is the ring without that);
 *   - ring/libp2p-pnet: the ring over libp2p streams on that same network (pnet + noise + yamux: the old default);
 *   - ring/keyed-chacha: the keyed data plane with ChaCha20-Poly1305 records;
 *   - ring/libp2p: the ring over libp2p without the swarm key (TCP + noise + yamux);
 *   - ring/plain: the same without noise (yamux straight over TCP; a benchmark-only "encrypter");
 *   - ring/tcp: the same ring over plain node:net sockets (reference a: the ring without any security);
 *   - gloo: PyTorch's `torch.distributed` all_reduce (gloo backend, N processes on 127.0.0.1), from Debian's
 *     python3-torch, installed here with apt-get when missing (`--no-gloo` skips it; `npm test` never needs it);
 * and, between two processes, the throughput of one libp2p stream (with and without noise) and of one plain
 * socket (reference b).
 * Then where the time goes: the adding loop, a memcpy, noise's cipher and the data plane's records per vector.
 * With BENCH_PROFILE_DIR=DIR in the environment each worker writes a CPU profile there (node --cpu-prof).
 */
import { fork, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { ensureTorch, PYTHON } from './torch.ts'
import { parseArgs } from 'node:util'
import { cpus, loadavg } from 'node:os'

const ALL_KINDS = ['swarm', 'swarm-bf16', 'swarm-reduce', 'libp2p-pnet', 'keyed-chacha', 'libp2p', 'plain', 'tcp', 'gloo'] as const
type RingKind = Exclude<typeof ALL_KINDS[number], 'gloo'>
const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,16,64' },
    peers: { type: 'string', default: '2,3,4' },
    rounds: { type: 'string', default: '5' },
    kinds: { type: 'string', default: ALL_KINDS.join(',') },
    'no-gloo': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false }
  }
})
const MiB = 1024 * 1024
// a size in MiB, to whole floats (4 bytes): every path below sends the same whole number of bytes
const sizes = (args.sizes ?? '').split(',').map(Number).filter(x => x > 0).map(x => Math.max(4, Math.round(x * MiB / 4) * 4) / MiB)
/** A size as printed: 4 significant digits. */
const shown = (mib: number): string => String(Number(mib.toPrecision(4)))
const peers = (args.peers ?? '').split(',').map(Number).filter(x => x >= 2)
const rounds = Math.max(1, Number(args.rounds))
const kinds = (args.kinds ?? '').split(',').filter(k => (ALL_KINDS as readonly string[]).includes(k))
const ringKinds = kinds.filter((k): k is RingKind => k !== 'gloo')
const withGloo = kinds.includes('gloo') && args['no-gloo'] !== true
const workerPath = fileURLToPath(new URL('./bench-allreduce-worker.ts', import.meta.url))
const glooPath = fileURLToPath(new URL('./bench-allreduce-gloo.py', import.meta.url))
/** One swarm key for every worker: their `swarm` networks form one private swarm. */
const swarmKey = randomBytes(32).toString('hex')
const log = (line: string): void => { process.stderr.write(`${line}\n`) }

type NodeName = 'swarm' | 'bf16' | 'reduce' | 'chacha' | 'libp2p' | 'plain'
const NODE_OF: Record<RingKind, NodeName> = { swarm: 'swarm', 'swarm-bf16': 'bf16', 'swarm-reduce': 'reduce', 'libp2p-pnet': 'swarm', 'keyed-chacha': 'chacha', libp2p: 'libp2p', plain: 'plain', tcp: 'swarm' }
interface Worker {
  child: ChildProcess
  ids: Record<NodeName, string>
  addrs: Record<NodeName, string[]>
  tcp: { host: string, port: number }
  next: (type: string) => Promise<any>
}

function spawnWorker (): Promise<Worker> {
  const child = fork(workerPath, [], { execPath: process.execPath, execArgv: [...process.execArgv, ...(process.env.BENCH_PROFILE_DIR !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [])], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, BENCH_SWARM_KEY: swarmKey } })
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


async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise(resolve => server.close(resolve))
  return port
}

/** gloo's all_reduce with n processes: per size, the median over `rounds` of the slowest rank's time (ms). */
async function gloo (n: number): Promise<Array<{ mib: number, ms: number }>> {
  const port = await freePort()
  const procs = Array.from({ length: n }, (_, rank) => spawn(PYTHON, [
    glooPath, '--rank', String(rank), '--world', String(n), '--port', String(port), '--sizes', sizes.join(','), '--rounds', String(rounds)
  ], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } }))
  let out = ''
  procs[0].stdout?.on('data', (b: Buffer) => { out += b.toString() })
  for (const p of procs.slice(1)) p.stdout?.resume()
  const codes = await Promise.all(procs.map(async p => await new Promise<number | null>(resolve => { p.once('exit', resolve) })))
  if (codes.some(c => c !== 0)) throw new Error(`gloo N=${n}: exit codes ${codes.join(', ')}`)
  return JSON.parse(out.trim().split('\n').at(-1) ?? '[]')
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** `cpuMs`: the CPU time (user + system) of the busiest member's process in a round, median over rounds. */
interface Row { kind: string, n: number, mib: number, ms: number, algbw: number, busbw: number, cpuMs?: number }
const loadBefore = loadavg()[0]
const rows: Row[] = []
const links: Array<{ kind: string, mib: number, ms: number, mbps: number }> = []
let micro: Record<string, number> = {}
let round = 0

const glooReady = withGloo && ensureTorch(line => { log(`gloo: ${line}`) }) !== null
for (const n of peers) {
  const workers = await Promise.all(Array.from({ length: n }, spawnWorker))
  for (const w of workers) w.child.send({ type: 'peers', peers: workers.map(x => ({ ids: x.ids, addrs: x.addrs, tcp: x.tcp })) })
  await Promise.all(workers.map(w => w.next('connected')))
  for (const mib of sizes) {
    // Round-robin over the kinds, one round of each in turn: the machine is shared, and its load drifts; this
    // way every kind sees the same drift. Small rounds are over before the JIT has warmed up: a few more
    // unmeasured ones (whichever kind ran first would look slower otherwise).
    const times = new Map<RingKind, number[]>(ringKinds.map(k => [k, []]))
    const cpuTimes = new Map<RingKind, number[]>(ringKinds.map(k => [k, []]))
    const warmup = mib < 1 ? 5 : 1
    for (let i = 0; i < warmup + rounds; i++) {
      for (const kind of ringKinds) {
        const members = workers.map(w => w.ids[NODE_OF[kind]])
        const r = round++
        for (const w of workers) w.child.send({ type: 'run', transport: kind, round: r, members, bytes: Math.round(mib * MiB / 4) * 4 })
        const results = await Promise.all(workers.map(w => w.next('ran')))
        const failed = results.find(x => !x.ok)
        if (failed !== undefined) throw new Error(`${kind} N=${n} ${shown(mib)} MiB round failed: ${failed.reason}`)
        if (i >= warmup) {
          times.get(kind)?.push(Math.max(...results.map(x => x.ms)))
          cpuTimes.get(kind)?.push(Math.max(...results.map(x => x.cpuMs)))
        }
      }
    }
    for (const kind of ringKinds) {
      const ms = median(times.get(kind) ?? [])
      const algbw = mib * MiB / (ms / 1000)
      const name = kind === 'swarm' ? 'swarm' : `ring/${kind}`
      const cpuMs = median(cpuTimes.get(kind) ?? [])
      rows.push({ kind: name, n, mib, ms, algbw, busbw: algbw * 2 * (n - 1) / n, cpuMs })
      log(`${name} N=${n} ${shown(mib)} MiB: ${ms.toFixed(1)} ms (cpu ${cpuMs.toFixed(1)} ms)`)
    }
    if (n === peers[0] && (kinds.includes('libp2p') || kinds.includes('plain') || kinds.includes('tcp'))) {
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
  if (glooReady) {
    for (const { mib, ms } of await gloo(n)) {
      const algbw = mib * MiB / (ms / 1000)
      rows.push({ kind: 'gloo', n, mib, ms, algbw, busbw: algbw * 2 * (n - 1) / n })
      log(`gloo N=${n} ${shown(mib)} MiB: ${ms.toFixed(1)} ms`)
    }
  }
}

const MB = (bps: number): string => (bps / 1e6).toFixed(0).padStart(7)
if (args.json === true) {
  console.log(JSON.stringify({ cpus: cpus().length, load: [loadBefore, loadavg()[0]], rows, links, micro }, null, 2))
} else {
  console.log(`\nall-reduce on 127.0.0.1, ${cpus().length} CPUs, median of ${rounds} rounds (slowest member), MB = 10^6 bytes`)
  console.log(`load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after (other processes share these CPUs: compare within a run, not across runs)\n`)
  console.log('kind               N   size           ms      algbw MB/s  busbw MB/s  cpu ms')
  for (const r of rows) {
    console.log(`${r.kind.padEnd(18)} ${String(r.n).padStart(1)}  ${`${shown(r.mib)} MiB`.padStart(12)} ${r.ms.toFixed(2).padStart(8)}  ${MB(r.algbw)}     ${MB(r.busbw)}  ${r.cpuMs === undefined ? '' : r.cpuMs.toFixed(1).padStart(6)}`)
  }
  console.log('\none link between two processes (reference b)')
  for (const l of links) console.log(`${l.kind.padEnd(16)} ${`${shown(l.mib)} MiB`.padStart(7)} ${l.ms.toFixed(1).padStart(8)} ms  ${MB(l.mbps)} MB/s`)
  console.log('\nratios to gloo (time: lower is better; busbw: higher is better)')
  for (const r of rows.filter(x => x.kind !== 'gloo')) {
    const g = rows.find(x => x.kind === 'gloo' && x.n === r.n && x.mib === r.mib)
    if (g !== undefined) console.log(`${r.kind.padEnd(18)} N=${r.n} ${`${shown(r.mib)} MiB`.padStart(12)}: time ${(r.ms / g.ms).toFixed(2)}x gloo, busbw ${(r.busbw / g.busbw).toFixed(2)}x gloo`)
  }
  const maxMiB = Math.max(...sizes)
  if (micro.addMs !== undefined) {
    console.log(`\nlocal costs for one ${maxMiB} MiB vector (one core)`)
    console.log(`  checked add (NaN/Inf test + add)  ${micro.addMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.addMs / 1000))} MB/s)`)
    console.log(`  plain add                         ${micro.plainAddMs.toFixed(1)} ms`)
    console.log(`  checked add, SIMD (sum buffer)    ${micro.simdAddMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.simdAddMs / 1000))} MB/s)`)
    console.log(`  memcpy (Float32Array.set)         ${micro.copyMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.copyMs / 1000))} MB/s)`)
    console.log(`  chacha20-poly1305 enc+dec (noise) ${micro.cipherMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.cipherMs / 1000))} MB/s)`)
    console.log(`  records, aes-256-gcm seal+open    ${micro.aesGcmRecordsMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.aesGcmRecordsMs / 1000))} MB/s)`)
    console.log(`  records, chacha20-poly1305        ${micro.chachaRecordsMs.toFixed(1)} ms  (${MB(maxMiB * MiB / (micro.chachaRecordsMs / 1000))} MB/s)`)
  }
}
