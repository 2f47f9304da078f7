/**
 * `npm run bench:rejoin`: how reliably and how fast a frozen member comes back (issue 12's freeze scenario).
 *
 * One swarm of 3 `peer start` processes on 127.0.0.1 (fast failure detection: heartbeats 500 ms, member
 * timeout 2.5 s, round timeout 3 s, step timeout 2 s), reused for every run. Each run waits for one ring of
 * three, freezes a random member with SIGSTOP at a random point (rounds take tens of milliseconds), wakes it
 * with SIGCONT after the freeze, and measures the time from waking until it is back: all three report the
 * same ring of three members in the same group, a group agreed after the freeze, none has `partition` set.
 * A member not back within the deadline is restarted on its data dir so that the next run starts from one
 * ring again (the run counts as not rejoined). Also counts, per run, syncs the two others adopted from the
 * frozen member (the majority must never take its state). Everything is killed at the end.
 *
 *   npm run bench:rejoin -- [--runs 20] [--freeze-s 5] [--deadline-s 30] [--json] [-- <more peer start flags>]
 *
 * Status is read through each peer's control API (api.json in its data dir). Asserts nothing.
 */
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiClient } from '../node/api/client.ts'
import { LocalSwarm } from '../test/helpers/swarm.ts'
import type { StatusJson } from '../test/helpers/swarm.ts'

const { values: args, positionals } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    'freeze-s': { type: 'string', default: '5' },
    'deadline-s': { type: 'string', default: '30' },
    json: { type: 'boolean', default: false }
  },
  allowPositionals: true
})
const RUNS = Number(args.runs)
const FREEZE_MS = Number(args['freeze-s']) * 1000
const DEADLINE_MS = Number(args['deadline-s']) * 1000
if (!(Number.isInteger(RUNS) && RUNS >= 1) || !(FREEZE_MS > 0) || !(DEADLINE_MS > 0)) {
  process.stderr.write('usage: bench-rejoin [--runs N ≥ 1] [--freeze-s S > 0] [--deadline-s S > 0] [--json] [-- peer start flags]\n')
  process.exit(2)
}
const NAMES = ['p1', 'p2', 'p3']
/** The failure detection of the partition tests: a member silent for 2.5 s is dead. */
const TIMING = ['--heartbeat-ms', '500', '--member-timeout', '2500', '--round-timeout', '3000', '--step-timeout', '2000', '--progress-every', '3600']
/** A small job that outlasts the benchmark. */
const JOB = ['--epochs', '1000', '--hidden', '64', '--batch-size', '32', '--shards', '12', '--seed', '7', '--checkpoint-every', '100']
const COMMON = ['--min-peers', '3', ...TIMING, ...positionals]
/** How often the peers are looked at while waiting for the rejoin. */
const LOOK_MS = 100

type Sync = StatusJson['syncs'][number] & { at?: number }

interface Run {
  run: number
  victim: string
  /** Round of the swarm when the member was frozen. */
  round: number
  /** ms from SIGCONT to one ring of three; null when not within the deadline. */
  rejoinMs: number | null
  /** Whether the two others had formed a ring without it while it was frozen. */
  droppedWhileFrozen: boolean
  /** Syncs the two others adopted from the frozen member (must be 0). */
  majorityAdopted: number
  /** Whether the frozen member itself took the swarm's state on waking. */
  victimSynced: boolean
  /** Restarted after missing the deadline. */
  restarted: boolean
}

async function status (swarm: LocalSwarm, name: string): Promise<StatusJson | undefined> {
  try {
    return await (await ApiClient.fromDataDir(swarm.dataDir(name))).status(AbortSignal.timeout(2000)) as unknown as StatusJson
  } catch {
    return undefined
  }
}

async function statuses (swarm: LocalSwarm): Promise<Array<StatusJson | undefined>> {
  return await Promise.all(NAMES.map(async n => await status(swarm, n)))
}

/** One ring of all three: same members, same group, training, none partitioned; with `afterEpoch`, a group agreed after it. */
function together (all: Array<StatusJson | undefined>, afterEpoch = -1): boolean {
  if (all.some(s => s === undefined)) return false
  const ss = all as StatusJson[]
  const ids = ss.map(s => s.peerId).sort().join()
  const epoch = ss[0].ring?.group?.epoch ?? null
  return ss.every(s => (s.state === 'training' || s.state === 'reducing') &&
    s.partition == null &&
    [...(s.ring?.members ?? [])].sort().join() === ids &&
    (s.ring?.group?.epoch ?? null) === epoch) &&
    (afterEpoch < 0 || epoch === null || epoch > afterEpoch)
}

async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const v = await probe()
    if (v !== undefined) return v
    await sleep(LOOK_MS)
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s`)
}

function line (s: StatusJson | undefined): string {
  if (s === undefined) return 'no answer'
  return `${s.state}/${s.ring?.state ?? '-'} step ${s.training?.step ?? '-'} round ${s.ring?.round ?? '-'} group ${s.ring?.group?.epoch ?? '-'} ring ${s.ring?.members.length ?? 0} peers ${s.peers.length}${s.partition != null ? ` partition ${s.partition.reachable}/${s.partition.needed}` : ''}`
}

const say = (text: string): void => { if (args.json !== true) process.stdout.write(text) }

const swarm = await LocalSwarm.create()
let cleaned = false
const cleanup = async (): Promise<void> => {
  if (cleaned) return
  cleaned = true
  for (const p of swarm.peers) { try { p.proc.child.kill('SIGCONT') } catch {} }
  await swarm.stopAll()
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void cleanup().finally(() => process.exit(130)) })
}

const loadBefore = loadavg()[0]
const runs: Run[] = []
const started = Date.now()
let aborted: string | null = null
try {
  await swarm.start('p1', [...COMMON, ...JOB])
  await swarm.start('p2', COMMON, 'p1')
  await swarm.start('p3', COMMON, 'p1')
  await until('one ring of three', 180_000, async () => together(await statuses(swarm)) ? true : undefined)
  say(`3 peers in one ring after ${((Date.now() - started) / 1000).toFixed(0)} s; ${RUNS} runs, frozen ${FREEZE_MS / 1000} s, deadline ${DEADLINE_MS / 1000} s\n`)

  for (let run = 1; run <= RUNS; run++) {
    await until(`run ${run}: one ring of three to start from`, 120_000, async () => together(await statuses(swarm)) ? true : undefined)
    const victim = NAMES[Math.floor(Math.random() * NAMES.length)]
    const others = NAMES.filter(n => n !== victim)
    const before = await statuses(swarm)
    const victimId = before[NAMES.indexOf(victim)]!.peerId
    // a random point of a round
    await sleep(Math.floor(Math.random() * 500))
    const child = swarm.proc(victim).child
    const round = Math.max(...before.map(s => s?.ring?.round ?? 0))
    const frozenAt = Date.now()
    child.kill('SIGSTOP')
    let droppedWhileFrozen = false
    let epochAtWake = -1
    try {
      // the freeze's length is the point; look at the others meanwhile
      while (Date.now() - frozenAt < FREEZE_MS) {
        const ss = await Promise.all(others.map(async n => await status(swarm, n)))
        if (ss.every(s => s !== undefined && !(s.ring?.members ?? []).includes(victimId))) droppedWhileFrozen = true
        for (const s of ss) epochAtWake = Math.max(epochAtWake, s?.ring?.group?.epoch ?? -1)
        await sleep(Math.max(0, Math.min(250, FREEZE_MS - (Date.now() - frozenAt))))
      }
    } finally {
      child.kill('SIGCONT')
    }
    const woke = Date.now()
    let rejoinMs: number | null = null
    let last: Array<StatusJson | undefined> = []
    while (Date.now() - woke < DEADLINE_MS) {
      last = await statuses(swarm)
      // the group must be one agreed after the freeze when the others had gone on without it
      if (together(last, droppedWhileFrozen ? epochAtWake : -1)) {
        rejoinMs = Date.now() - woke
        break
      }
      await sleep(LOOK_MS)
    }
    if (rejoinMs === null) last = await statuses(swarm)
    const majorityAdopted = others.reduce((n, o) => n + ((last[NAMES.indexOf(o)]?.syncs ?? []) as Sync[]).filter(x => (x.at ?? Infinity) >= frozenAt && x.adopted === true && (x.from ?? []).includes(victimId)).length, 0)
    const victimSynced = ((last[NAMES.indexOf(victim)]?.syncs ?? []) as Sync[]).some(x => (x.at ?? 0) >= frozenAt && x.adopted === true)
    let restarted = false
    if (rejoinMs === null) {
      process.stderr.write(`run ${run}: ${victim} not back within ${DEADLINE_MS / 1000} s: ${NAMES.map((n, i) => `${n} ${line(last[i])}`).join(' | ')}\n`)
      process.stderr.write(`${victim} stderr (tail):\n${swarm.proc(victim).stderr.slice(-2000)}\n`)
      // start the next run from one ring: restart the member on its data dir (it resumes and catches up)
      child.kill('SIGKILL')
      await swarm.proc(victim).exited(10_000).catch(() => {})
      await swarm.start(victim, COMMON, others[0])
      restarted = true
    }
    runs.push({ run, victim, round, rejoinMs, droppedWhileFrozen, majorityAdopted, victimSynced, restarted })
    say(`run ${String(run).padStart(2)}: froze ${victim} at round ${round}: ${rejoinMs !== null ? `back in ${(rejoinMs / 1000).toFixed(2)} s` : `NOT back within ${DEADLINE_MS / 1000} s (restarted)`}${droppedWhileFrozen ? '' : ' (the others had not dropped it)'}${majorityAdopted > 0 ? `; the others adopted its state ${majorityAdopted}×` : ''}\n`)
  }
} catch (err) {
  aborted = (err as Error).message
  process.stderr.write(`stopped early: ${aborted}\n`)
} finally {
  await cleanup()
}

const times = runs.map(r => r.rejoinMs).filter((x): x is number => x !== null).sort((a, b) => a - b)
const median = times.length === 0 ? null : times.length % 2 === 1 ? times[(times.length - 1) / 2] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2
const summary = {
  runs: runs.length,
  rejoined: times.length,
  minMs: times[0] ?? null,
  medianMs: median,
  maxMs: times[times.length - 1] ?? null,
  majorityAdopted: runs.reduce((n, r) => n + r.majorityAdopted, 0)
}
const meta = { aborted, freezeS: FREEZE_MS / 1000, deadlineS: DEADLINE_MS / 1000, cores: cpus().length, loadBefore, loadAfter: loadavg()[0], seconds: Math.round((Date.now() - started) / 1000), flags: COMMON }
if (args.json === true) {
  process.stdout.write(JSON.stringify({ meta, summary, runs }, null, 2) + '\n')
} else {
  const s = (ms: number | null): string => ms === null ? '-' : `${(ms / 1000).toFixed(2)} s`
  process.stdout.write(`rejoined within ${DEADLINE_MS / 1000} s: ${summary.rejoined} of ${summary.runs}; rejoin time min ${s(summary.minMs)}, median ${s(summary.medianMs)}, max ${s(summary.maxMs)}; majority adopted the frozen member's state ${summary.majorityAdopted}×\n`)
  process.stdout.write(`(${meta.cores} cores, load ${loadBefore.toFixed(1)} → ${meta.loadAfter.toFixed(1)}, ${meta.seconds} s in all)${aborted !== null ? `; stopped early: ${aborted}` : ''}\n`)
}
process.exit(aborted === null ? 0 : 1)
