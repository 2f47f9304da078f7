/**
 * `npm start` alone and as a swarm: wall time to the single peer's test accuracy.
 *
 *   npm run bench:start -- [--peers 1,3] [--target ACC] [--swarm-epochs N] [--swarm-lr RATE] [--json] [-- <job flags for npm start>]
 *
 * Runs `node scripts/start.ts --peers N` (exactly what `npm start` runs) once per swarm size, in order, on fresh
 * data dirs, and times from its launch: the first peer training, every peer in one ring, each epoch's test
 * accuracy (the first peer's `epoch E done` lines), the job done. The target is the first run's final test
 * accuracy (the single peer's, with the default `--peers 1,3`) unless `--target` gives one; each run then reports
 * the wall time at which its first peer's test accuracy first reached it, or that it did not. `--swarm-epochs N`
 * gives the runs with more than one peer N epochs (the job otherwise: a swarm of N trains like one machine with an
 * N-times larger batch, so it may need more epochs to reach the same accuracy); `--swarm-lr RATE` gives them
 * another learning rate (the larger batch's usual remedy: scale the rate with it).
 *
 * While a run trains, every peer's `peer status --json` is polled once a second, for where the time goes: the
 * phases (starting, joining, syncing, training) of each peer, the swarm samples/s, the step split
 * (`training.timing`: compute, reduce, apply) and the ring's own time per round (`ring.last`).
 *
 * Nothing is asserted: the machine is shared. The load average is printed before and after each run.
 */
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { readStatus } from './peer-status.ts'

const { values: args, positionals } = parseArgs({
  options: {
    peers: { type: 'string', default: '1,3' },
    target: { type: 'string' },
    'swarm-epochs': { type: 'string' },
    'swarm-lr': { type: 'string' },
    json: { type: 'boolean', default: false }
  },
  allowPositionals: true
})
const sizes = (args.peers ?? '').split(',').map(Number)
if (sizes.length === 0 || sizes.some(n => !Number.isInteger(n) || n < 1 || n > 16)) {
  process.stderr.write('bench-start: --peers takes a comma-separated list of numbers from 1 to 16\n')
  process.exit(2)
}
const fixedTarget = args.target !== undefined ? Number(args.target) : null
if (fixedTarget !== null && !(fixedTarget > 0 && fixedTarget <= 1)) {
  process.stderr.write(`bench-start: --target ${args.target} is not an accuracy in (0, 1]\n`)
  process.exit(2)
}
const swarmEpochs = args['swarm-epochs'] !== undefined ? Number(args['swarm-epochs']) : null
if (swarmEpochs !== null && !(Number.isInteger(swarmEpochs) && swarmEpochs >= 1)) {
  process.stderr.write(`bench-start: --swarm-epochs ${args['swarm-epochs']} is not a whole number >= 1\n`)
  process.exit(2)
}
const swarmLr = args['swarm-lr'] !== undefined ? Number(args['swarm-lr']) : null
if (swarmLr !== null && !(swarmLr > 0)) {
  process.stderr.write(`bench-start: --swarm-lr ${args['swarm-lr']} is not a positive rate\n`)
  process.exit(2)
}
const startScript = join(import.meta.dirname, 'start.ts')
const log = (line: string): void => { (args.json === true ? process.stderr : process.stdout).write(`${line}\n`) }

interface Status {
  state: string
  pid?: number
  job: { batchSize: number } | null
  ring: { members: string[], completed: number, last: { ms?: number, allReduceMs?: number, timeMs?: number } | null, fastRounds?: number, agreedRounds?: number }
  training: { step: number, epoch: number, samplesPerSec: number, timing: { computeMs: number, reduceMs: number, applyMs: number } } | null
  syncs?: Array<{ ms: number, bytes: number, donors: number }>
}

async function status (dataDir: string): Promise<Status | null> {
  return await readStatus<Status>(dataDir)
}

const median = (xs: number[]): number | null => xs.length === 0 ? null : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const round1 = (x: number | null): number | null => x === null ? null : Math.round(x * 10) / 10

interface Run {
  peers: number
  epochs: { epoch: number, accuracy: number, step: number, s: number }[]
  /** Seconds from launch: the first line, every peer's first non-starting states, all in one ring, first step, done. */
  phases: Record<string, number>
  finalAccuracy: number | null
  wallSeconds: number
  /** Seconds at which the first peer's test accuracy first reached the target, or null. */
  toTarget: number | null
  target: number | null
  samplesPerSec: number | null
  step: { computeMs: number | null, reduceMs: number | null, applyMs: number | null }
  ringMs: number | null
  steps: number
  /**
   * Over the polls in which every peer was training: the swarm's samples/s from the first peer's step count, the
   * CPU time all peers used (utime + stime from /proc) per 1000 samples, and how many cores they kept busy.
   */
  steady: { seconds: number, samplesPerSec: number, cpuSecondsPer1000: number, cores: number } | null
  /** Each joiner's first state sync (fetching the weights and optimizer state from the members): ms, bytes, donors. */
  syncs: Record<string, { ms: number, bytes: number, donors: number }>
  identicalWeights: boolean | null
  load: { before: number[], after: number[] }
  exitCode: number
}

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat, or null. */
function cpuSeconds (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // fields after the command name (which may hold spaces), from field 3 on: utime and stime are fields 14, 15
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
  } catch {
    return null
  }
}

function lastAllReduceMs (s: Status): number | null {
  const l = s.ring.last as Record<string, unknown> | null
  if (l === null || l === undefined) return null
  for (const k of ['ms', 'allReduceMs', 'timeMs', 'durationMs']) if (typeof l[k] === 'number') return l[k]
  return null
}

async function run (n: number, target: number | null): Promise<Run> {
  const before = loadavg()
  const extra = n > 1 ? [...(swarmEpochs !== null ? ['--epochs', String(swarmEpochs)] : []), ...(swarmLr !== null ? ['--lr', String(swarmLr)] : [])] : []
  const t0 = performance.now()
  const at = (): number => Math.round((performance.now() - t0) / 100) / 10
  const child = spawn(process.execPath, [startScript, '--peers', String(n), ...positionals, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  const r: Run = { peers: n, epochs: [], phases: {}, finalAccuracy: null, wallSeconds: 0, toTarget: null, target, samplesPerSec: null, step: { computeMs: null, reduceMs: null, applyMs: null }, ringMs: null, steps: 0, steady: null, syncs: {}, identicalWeights: null, load: { before, after: [] }, exitCode: 0 }
  let base: string | null = null
  let buffer = ''
  child.stdout.on('data', (b: Buffer) => {
    buffer += b.toString()
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      const s = at()
      const dirs = /data dirs under (\S+)/.exec(line)
      if (dirs !== null) base = dirs[1]
      if (/^\[peer-1\] peer started/.test(line)) r.phases['peer-1 started training'] ??= s
      const e = /^\[peer-1\] epoch (\d+) done: test accuracy ([\d.]+).*\(step (\d+)\)/.exec(line)
      if (e !== null) {
        const ep = { epoch: Number(e[1]), accuracy: Number(e[2]), step: Number(e[3]), s }
        r.epochs.push(ep)
        if (target !== null && r.toTarget === null && ep.accuracy >= target) r.toTarget = s
        log(`  ${n}p ${s.toFixed(1)} s: epoch ${ep.epoch} test accuracy ${ep.accuracy.toFixed(4)} (step ${ep.step})`)
      }
      const d = /^\[(peer-\d+)\] done: .*test accuracy ([\d.]+)/.exec(line)
      if (d !== null) {
        r.phases[`${d[1]} done`] = s
        if (d[1] === 'peer-1') r.finalAccuracy = Number(d[2])
      }
      if (/identical weights/.test(line)) r.identicalWeights = true
      if (/weights differ/.test(line)) r.identicalWeights = false
    }
  })
  let err = ''
  child.stderr.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000) })
  const exit = new Promise<number>(resolve => child.once('exit', code => { resolve(code ?? 1) }))
  let done = false
  void exit.then(() => { done = true })

  // poll every peer's status for phases and step timing while it runs
  const rates: number[] = []
  const compute: number[] = []
  const reduce: number[] = []
  const apply: number[] = []
  const ring: number[] = []
  const seen = new Map<string, string>()
  let firstStep = -1
  let lastStep = 0
  let steadyStart: { t: number, step: number, cpu: number } | null = null
  let steadyEnd: { t: number, step: number, cpu: number } | null = null
  let batch = 0
  while (!done) {
    // finely while the swarm starts (its phases), then once a second
    await sleep(r.phases['peer-1 first step seen'] === undefined ? 250 : 1000)
    if (base === null || done) continue
    const all = await Promise.all(Array.from({ length: n }, async (_, i) => await status(join(base as string, `peer-${i + 1}`))))
    const s = at()
    all.forEach((st, i) => {
      if (st === null) return
      const name = `peer-${i + 1}`
      const sync = st.syncs?.[0]
      if (i > 0 && sync !== undefined) r.syncs[name] ??= { ms: Math.round(sync.ms), bytes: sync.bytes, donors: sync.donors }
      if (seen.get(name) !== st.state) {
        seen.set(name, st.state)
        r.phases[`${name} ${st.state}`] ??= s
      }
    })
    const cpu = all.map(st => st?.pid !== undefined ? cpuSeconds(st.pid) : null)
    const p0 = all[0]
    if (all.every(st => st?.training != null && st.training.step > 0 && (st.state === 'training' || st.state === 'reducing')) && cpu.every(c => c !== null) && p0?.training != null) {
      const point = { t: performance.now() / 1000, step: p0.training.step, cpu: (cpu as number[]).reduce((a, b) => a + b, 0) }
      batch = p0.job?.batchSize ?? 0
      if (steadyStart === null) steadyStart = point
      else steadyEnd = point
    }
    if (n > 1 && r.phases['all in one ring'] === undefined && all.every(st => st !== null && (st.state === 'training' || st.state === 'reducing') && st.ring.members.length === n)) r.phases['all in one ring'] = s
    const p1 = all[0]
    if (p1?.training != null && p1.training.step > 0) {
      if (firstStep < 0) { firstStep = p1.training.step; r.phases['peer-1 first step seen'] = s }
      lastStep = p1.training.step
      if (p1.state === 'training' || p1.state === 'reducing') {
        if (p1.training.samplesPerSec > 0) rates.push(p1.training.samplesPerSec)
        compute.push(p1.training.timing.computeMs)
        reduce.push(p1.training.timing.reduceMs)
        apply.push(p1.training.timing.applyMs)
        const ms = lastAllReduceMs(p1)
        if (ms !== null) ring.push(ms)
      }
    }
  }
  r.exitCode = await exit
  r.wallSeconds = at()
  r.load.after = loadavg()
  r.samplesPerSec = median(rates)
  r.step = { computeMs: round1(median(compute)), reduceMs: round1(median(reduce)), applyMs: round1(median(apply)) }
  r.ringMs = round1(median(ring))
  r.steps = lastStep
  if (steadyStart !== null && steadyEnd !== null && steadyEnd.step > steadyStart.step) {
    const dt = steadyEnd.t - steadyStart.t
    // H = 1: a step is one batch on every peer (H > 1: one local step each, the same count)
    const samples = (steadyEnd.step - steadyStart.step) * batch * n
    const cpuUsed = steadyEnd.cpu - steadyStart.cpu
    r.steady = { seconds: Math.round(dt * 10) / 10, samplesPerSec: Math.round(samples / dt), cpuSecondsPer1000: Math.round(cpuUsed / samples * 1000 * 1000) / 1000, cores: Math.round(cpuUsed / dt * 100) / 100 }
  }
  if (r.finalAccuracy === null && r.epochs.length > 0) r.finalAccuracy = r.epochs[r.epochs.length - 1].accuracy
  if (r.exitCode !== 0) log(`  ${n}p: npm start exited with ${r.exitCode}: ${err.slice(-1500)}`)
  if (base !== null) rmSync(base, { recursive: true, force: true })
  return r
}

log(`bench-start: ${cpus().length} CPUs, load ${loadavg().map(l => l.toFixed(2)).join(' ')}; npm start ${positionals.join(' ')}`)
const runs: Run[] = []
let target = fixedTarget
for (const n of sizes) {
  log(`npm start -- --peers ${n}${n > 1 && swarmEpochs !== null ? ` --epochs ${swarmEpochs}` : ''}${n > 1 && swarmLr !== null ? ` --lr ${swarmLr}` : ''} ${positionals.join(' ')}`)
  const r = await run(n, target)
  if (target === null && r.finalAccuracy !== null) {
    target = r.finalAccuracy
    r.target = target
    r.toTarget = r.epochs.find(e => e.accuracy >= (target as number))?.s ?? null
  }
  runs.push(r)
  if (args.json !== true) {
    const phases = Object.entries(r.phases).sort((a, b) => a[1] - b[1]).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')
    log(`${n} peer${n > 1 ? 's' : ''}: done in ${r.wallSeconds.toFixed(1)} s wall, final test accuracy ${r.finalAccuracy?.toFixed(4) ?? '-'} after ${r.epochs.length} epochs (${r.steps} steps); ` +
      `${r.target !== null ? (r.toTarget !== null ? `reached ${r.target.toFixed(4)} at ${r.toTarget.toFixed(1)} s` : `did not reach ${r.target.toFixed(4)}`) : ''}`)
    log(`  swarm ${r.samplesPerSec ?? '-'} samples/s (median); step: compute ${r.step.computeMs ?? '-'} ms, reduce ${r.step.reduceMs ?? '-'} ms (ring's own ${r.ringMs ?? '-'} ms), apply ${r.step.applyMs ?? '-'} ms${r.identicalWeights !== null ? `; identical weights ${r.identicalWeights ? 'yes' : 'NO'}` : ''}`)
    if (r.steady !== null) log(`  steady (${r.steady.seconds} s, every peer training): ${r.steady.samplesPerSec} samples/s from the step count; all peers used ${r.steady.cores} cores, ${r.steady.cpuSecondsPer1000} CPU s per 1000 samples`)
    log(`  phases: ${phases}`)
    const syncs = Object.entries(r.syncs)
    if (syncs.length > 0) log(`  state sync: ${syncs.map(([k, v]) => `${k} ${v.ms} ms (${(v.bytes / 1e6).toFixed(1)} MB from ${v.donors} donor${v.donors === 1 ? '' : 's'})`).join(', ')}`)
    log(`  load ${r.load.before.map(l => l.toFixed(2)).join(' ')} → ${r.load.after.map(l => l.toFixed(2)).join(' ')}`)
  }
}
if (args.json === true) process.stdout.write(JSON.stringify({ cores: cpus().length, target, runs }, null, 2) + '\n')
else if (runs.length > 1 && target !== null) {
  const alone = runs.find(r => r.peers === 1)
  for (const r of runs.filter(x => x.peers > 1)) {
    // the goal: the swarm reaches the single peer's accuracy in less wall time than the single peer's whole run
    const reached = r.toTarget !== null ? `${r.toTarget.toFixed(1)} s` : `not reached in ${r.wallSeconds.toFixed(1)} s (best ${Math.max(...r.epochs.map(e => e.accuracy)).toFixed(4)})`
    log(`test accuracy ${target.toFixed(4)}: ${r.peers} peers ${reached}; 1 peer ${alone !== undefined ? `${alone.wallSeconds.toFixed(1)} s for its whole run (first reached at ${alone.toTarget?.toFixed(1) ?? '-'} s)` : '-'}` +
      `${r.toTarget !== null && alone !== undefined ? `: ${(r.toTarget / alone.wallSeconds).toFixed(2)}x the single peer's wall time` : ''}`)
  }
}
