/**
 * Scaling benchmark: swarm samples/s of the default job (H = 1 unless given) for 1, 2 and 3 peers on this
 * machine, each peer pinned with `taskset -c K` to a core of its own (peer i on core i mod cores), so that the
 * peer alone and each swarm member get one core: one-core machines. Prints, per swarm size, the median swarm
 * samples/s over a steady window, the ratio to the peer alone, the step split (compute, reduce, apply) and how
 * many rounds reused the group without an agreement; and, for N > 1, the reference of N peers training apart at
 * once (each alone, pinned the same way, no swarm: `--no-apart` skips it), the most N members can reach here
 * with an all-reduce that cost nothing, since busy cores slow each other down on these machines.
 *
 * The reference for the ratio (`--no-ddp` skips it): PyTorch training the same model the way its users scale it,
 * pinned the same way: one process alone, and N processes of DistributedDataParallel over gloo
 * (scripts/bench-scaling-ddp.py, with Debian's python3-torch, installed with apt-get when missing). Debian's
 * torch computes a dense step several times slower than our trainer (it calls the reference BLAS), and a
 * slower step hides a sync of the same cost better; so beside the ratios each row says how many milliseconds
 * the sync adds to a step: the swarm's step against the peer alone's, DDP's against PyTorch alone's, the same
 * gradient summed between the same cores.
 *
 *   npm run bench:scaling -- [--peers 1,2,3] [--seconds 20] [--no-ddp] [--compute main|worker] [--json] [-- <job flags for peer start>]
 *
 * Nothing is asserted: the machine is shared and noisy; compare the ratios of one run.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { joinTokenOf } from '../node/security/index.ts'
import { readStatus } from './peer-status.ts'
import { ensureTorch, PYTHON } from './torch.ts'
import type { RoundTiming } from '../node/rounds/index.ts'

const { values: args, positionals } = parseArgs({
  options: {
    peers: { type: 'string', default: '1,2,3' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    /** Skips the reference of N peers training apart (each alone, all at once, no swarm). */
    'no-apart': { type: 'boolean', default: false },
    /** Skips the PyTorch DDP reference. */
    'no-ddp': { type: 'boolean', default: false },
    /** Writes each peer's CPU profile (node --cpu-prof) into this folder; peers are then stopped with SIGTERM. */
    profile: { type: 'string' },
    /** `peer start --compute` for every peer (the job flags after `--` go to every peer: the same job). */
    compute: { type: 'string', default: 'main' }
  },
  allowPositionals: true
})
const sizes = (args.peers ?? '').split(',').map(Number).filter(n => Number.isInteger(n) && n >= 1)
const seconds = Number(args.seconds)
const warmup = Number(args.warmup)
const cores = cpus().length
const pin = args['no-pin'] !== true
const jobArgs = positionals.length > 0 ? positionals : []
if (args.compute !== 'main' && args.compute !== 'worker') {
  process.stderr.write(`bench-scaling: --compute takes main or worker, not ${args.compute}\n`)
  process.exit(2)
}
const peerArgs = ['--compute', args.compute]
const root = join(import.meta.dirname, '..')
const bin = join(root, 'bin', 'peer.js')

interface Status {
  state: string
  addresses: string[]
  ring: { members: string[], fastRounds?: number, agreedRounds?: number, last: { ms: number } | null, timing?: RoundTiming | null }
  training: { step: number, samplesPerSec: number, weightsHash: string | null, timing: { computeMs: number, reduceMs: number, applyMs: number } } | null
}

async function status (dataDir: string): Promise<Status | null> {
  return await readStatus<Status>(dataDir)
}

async function until<T> (what: string, ms: number, probe: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const v = await probe()
    if (v !== null && v !== undefined) return v
    await sleep(250)
  }
  throw new Error(`${what}: not within ${ms / 1000} s`)
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
/** The median over status samples of one timing figure, to 2 decimals; null without samples. */
const of = (ts: RoundTiming[], pick: (t: RoundTiming) => number): number | null => ts.length > 0 ? Math.round(median(ts.map(pick)) * 100) / 100 : null

interface Row {
  peers: number
  samplesPerSec: number
  ratio: number | null
  stepsPerSec: number
  computeMs: number
  reduceMs: number
  applyMs: number
  /**
   * From status ring.timing (the last 256 rounds, sampled once a second, medians of the samples): the ring's own
   * time per round, what the rounds add to it (round by round), and the round as the trainer waits for it
   * (p50, p90, mean: the tail is what a late member costs the others).
   */
  ringMs: number | null
  roundOverheadMs: number | null
  roundP50Ms: number | null
  roundP90Ms: number | null
  roundMeanMs: number | null
  fastRounds: number
  agreedRounds: number
  identicalWeights: boolean
  /**
   * The reference for N > 1: N peers training apart at the same time, each alone and pinned as the swarm's
   * members are. Their summed samples/s is what N members could reach with an all-reduce that cost nothing: on
   * this machine two busy cores slow each other's compute (shared caches and memory, or one physical core).
   */
  apart?: { samplesPerSec: number, ratio: number | null, computeMs: number, swarmOfApart: number }
  /** The wall time of one step (1000 / steps per second) minus the peer alone's: what the sync adds to a step. */
  addedMs: number | null
  /** PyTorch DDP (gloo) with as many processes, pinned the same way; its ratio is to PyTorch alone. */
  ddp?: { samplesPerSec: number, ratio: number | null, stepMs: number, addedMs: number | null }
}

/** A job flag's value among the flags for peer start (the DDP reference trains the same model and batch). */
function jobFlag (name: string): string | undefined {
  const i = jobArgs.indexOf(name)
  return i >= 0 ? jobArgs[i + 1] : undefined
}

/** PyTorch training the default job's model with n processes (DDP over gloo for n > 1), each on its own core. */
async function ddp (n: number): Promise<{ samplesPerSec: number, stepMs: number }> {
  const script = join(import.meta.dirname, 'bench-scaling-ddp.py')
  const port = 29_500 + Math.floor(Math.random() * 1000)
  const flags = ['--world', String(n), '--port', String(port), '--seconds', String(seconds), '--hidden', jobFlag('--hidden') ?? '256,128', '--batch', jobFlag('--batch-size') ?? '64', '--lr', jobFlag('--lr') ?? '0.001']
  const procs = Array.from({ length: n }, (_, rank) => {
    const argv = [script, '--rank', String(rank), ...flags]
    return spawn(pin ? 'taskset' : PYTHON, pin ? ['-c', String(rank % cores), PYTHON, ...argv] : argv, { stdio: ['ignore', 'pipe', 'inherit'] })
  })
  let out = ''
  procs[0].stdout?.on('data', (b: Buffer) => { out += b.toString() })
  for (const p of procs.slice(1)) p.stdout?.resume()
  const codes = await Promise.all(procs.map(async p => await new Promise<number | null>(resolve => { p.once('exit', resolve) })))
  if (codes.some(c => c !== 0)) throw new Error(`PyTorch DDP with ${n} processes: exit codes ${codes.join(', ')}`)
  const r = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { samplesPerSec: number, stepMs: number }
  return { samplesPerSec: Math.round(r.samplesPerSec), stepMs: Math.round(r.stepMs * 100) / 100 }
}

async function run (n: number, apart = false): Promise<Omit<Row, 'ratio' | 'addedMs'>> {
  const base = mkdtempSync(join(tmpdir(), 'peer-bench-scaling-'))
  const children: ChildProcess[] = []
  const dirs = Array.from({ length: n }, (_, i) => join(base, `peer-${i + 1}`))
  const launch = (i: number, extra: string[]): void => {
    const argv = [bin, 'start', '--data-dir', dirs[i], '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--min-peers', String(n), '--epochs', '1000', ...peerArgs, ...extra]
    const cmd = pin ? 'taskset' : process.execPath
    const node = args.profile !== undefined ? ['--cpu-prof', '--cpu-prof-dir', args.profile, ...argv] : argv
    const full = pin ? ['-c', String(i % cores), process.execPath, ...node] : node
    const child = spawn(cmd, full, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PEER_LOG_LEVEL: 'warn' } })
    child.stderr?.on('data', () => {})
    children.push(child)
  }
  const launchAlone = (i: number): void => {
    const argv = [bin, 'start', '--data-dir', dirs[i], '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--min-peers', '1', '--epochs', '1000', ...peerArgs, ...jobArgs]
    const full = pin ? ['-c', String(i % cores), process.execPath, ...argv] : argv
    const child = spawn(pin ? 'taskset' : process.execPath, full, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PEER_LOG_LEVEL: 'warn' } })
    child.stderr?.on('data', () => {})
    children.push(child)
  }
  try {
    if (apart) {
      // the reference: n peers each training alone at the same time, each pinned to its core as the swarm's are
      for (let i = 0; i < n; i++) launchAlone(i)
      await until(`${n} peers training apart`, 120_000, async () => {
        const all = await Promise.all(dirs.map(status))
        return all.every(s => s?.state === 'training' && (s.training?.step ?? 0) > 0) ? true : null
      })
    } else {
      launch(0, jobArgs)
      if (n > 1) {
        const address = await until('first peer listening', 60_000, async () => (await status(dirs[0]))?.addresses[0])
        const token = await joinTokenOf(dirs[0], [address])
        // joiners get the job flags too: they carry --epochs 1000 (a job flag), so only the same job's are accepted
        for (let i = 1; i < n; i++) launch(i, [...jobArgs, ...(token !== null ? ['--join', token] : ['--open', '--join', address])])
      }
      await until(`${n} peers training in one ring`, 120_000, async () => {
        const all = await Promise.all(dirs.map(status))
        return all.every(s => s?.state === 'training' || s?.state === 'reducing') && all.every(s => (s?.ring.members.length ?? 0) === n || n === 1) ? true : null
      })
    }
    await sleep(warmup * 1000)
    const rates: number[] = []
    const timings: RoundTiming[] = []
    const first = await until('status', 10_000, async () => await status(dirs[0]))
    const t0 = performance.now()
    let last = first
    let timing = first.training?.timing ?? { computeMs: 0, reduceMs: 0, applyMs: 0 }
    const end = Date.now() + seconds * 1000
    while (Date.now() < end) {
      await sleep(1000)
      const s = await status(dirs[0])
      if (s?.training == null) continue
      if (apart) rates.push((await Promise.all(dirs.map(status))).reduce((sum, x) => sum + (x?.training?.samplesPerSec ?? 0), 0))
      else rates.push(s.training.samplesPerSec)
      timing = s.training.timing
      if (n > 1 && s.ring.timing != null) timings.push(s.ring.timing)
      last = s
    }
    const dt = (performance.now() - t0) / 1000
    const steps = (last.training?.step ?? 0) - (first.training?.step ?? 0)
    const finals = await Promise.all(dirs.map(status))
    const hashes = new Set(finals.map(s => s?.training?.weightsHash))
    return {
      peers: n,
      samplesPerSec: Math.round(median(rates)),
      stepsPerSec: Math.round(steps / dt * 10) / 10,
      computeMs: timing.computeMs,
      reduceMs: timing.reduceMs,
      applyMs: timing.applyMs,
      ringMs: of(timings, t => t.ringP50Ms),
      roundOverheadMs: of(timings, t => t.overheadP50Ms),
      roundP50Ms: of(timings, t => t.p50Ms),
      roundP90Ms: of(timings, t => t.p90Ms),
      roundMeanMs: of(timings, t => t.meanMs),
      fastRounds: last.ring.fastRounds ?? 0,
      agreedRounds: last.ring.agreedRounds ?? 0,
      // members may be one round apart when read: equal hashes are likely, not certain
      identicalWeights: hashes.size === 1
    }
  } finally {
    for (const c of children) c.kill(args.profile !== undefined ? 'SIGTERM' : 'SIGKILL')
    await Promise.all(children.map(async c => { if (c.exitCode === null && c.signalCode === null) await new Promise(resolve => c.once('exit', resolve)) }))
    rmSync(base, { recursive: true, force: true })
  }
}

const withDdp = args['no-ddp'] !== true && ensureTorch(line => { process.stderr.write(`DDP reference: ${line}\n`) }) !== null
const loadBefore = loadavg()[0]
const rows: Row[] = []
let alone: number | null = null
let aloneStepMs: number | null = null
let torchAlone: { samplesPerSec: number, stepMs: number } | null = null
const round2 = (x: number): number => Math.round(x * 100) / 100
for (const n of sizes) {
  const r = await run(n)
  if (n === 1) {
    alone = r.samplesPerSec
    aloneStepMs = r.stepsPerSec > 0 ? 1000 / r.stepsPerSec : null
  }
  const ratio = (x: number): number | null => alone !== null && alone > 0 ? Math.round(x / alone * 100) / 100 : null
  const stepMs = r.stepsPerSec > 0 ? 1000 / r.stepsPerSec : null
  const row: Row = { ...r, ratio: ratio(r.samplesPerSec), addedMs: n > 1 && stepMs !== null && aloneStepMs !== null ? round2(stepMs - aloneStepMs) : null }
  if (n > 1 && args['no-apart'] !== true) {
    const a = await run(n, true)
    row.apart = { samplesPerSec: a.samplesPerSec, ratio: ratio(a.samplesPerSec), computeMs: a.computeMs, swarmOfApart: a.samplesPerSec > 0 ? Math.round(r.samplesPerSec / a.samplesPerSec * 100) / 100 : 0 }
  }
  if (withDdp) {
    // PyTorch alone first, whatever sizes were asked: the DDP rows' ratios are to it
    if (torchAlone === null) torchAlone = await ddp(1)
    const d = n === 1 ? torchAlone : await ddp(n)
    row.ddp = {
      ...d,
      ratio: torchAlone.samplesPerSec > 0 ? round2(d.samplesPerSec / torchAlone.samplesPerSec) : null,
      addedMs: n > 1 ? round2(d.stepMs - torchAlone.stepMs) : null
    }
  }
  rows.push(row)
  if (args.json !== true) {
    process.stdout.write(`${n} peer${n > 1 ? 's' : ' '}: ${row.samplesPerSec} samples/s (${row.ratio ?? '-'}x alone), ${row.stepsPerSec} steps/s; step: compute ${row.computeMs} ms, reduce ${row.reduceMs} ms, apply ${row.applyMs} ms${row.ringMs !== null ? `; a round p50 ${row.roundP50Ms} ms, p90 ${row.roundP90Ms}, mean ${row.roundMeanMs} (the ring's own p50 ${row.ringMs} ms; the rounds add ${row.roundOverheadMs} ms a round)` : ''}; rounds in a reused group ${row.fastRounds}, agreed ${row.agreedRounds}\n`)
    if (row.addedMs !== null) process.stdout.write(`${n} peers: a step takes ${row.addedMs} ms longer than the peer alone's\n`)
    if (row.apart !== undefined) process.stdout.write(`${n} apart: ${row.apart.samplesPerSec} samples/s (${row.apart.ratio ?? '-'}x alone; compute ${row.apart.computeMs} ms a step): the swarm reaches ${row.apart.swarmOfApart}x of ${n} peers training apart at once\n`)
    if (row.ddp !== undefined) process.stdout.write(`PyTorch ${n === 1 ? 'alone ' : `DDP ${n}`}: ${row.ddp.samplesPerSec} samples/s (${row.ddp.ratio ?? '-'}x PyTorch alone), ${row.ddp.stepMs} ms a step${row.ddp.addedMs !== null ? `, ${row.ddp.addedMs} ms longer than PyTorch alone's` : ''}\n`)
  }
}
const meta = { cores, pinned: pin, loadBefore, loadAfter: loadavg()[0], job: jobArgs }
if (args.json === true) process.stdout.write(JSON.stringify({ meta, rows }, null, 2) + '\n')
else process.stdout.write(`(${cores} cores, ${pin ? 'each peer pinned to one core' : 'not pinned'}; load ${loadBefore.toFixed(1)} → ${meta.loadAfter.toFixed(1)})\n`)
