/**
 * How fast the manifest converges: for N real `peer start` processes on
 * 127.0.0.1 and a job of S shards, the time until every peer sees the same
 * complete assignment of shards to the live peers, and, after one peer is
 * SIGKILLed, the time until the survivors agree again without it.
 *
 *   npx node scripts/bench-manifest.ts [--peers 2,4,8] [--shards 16,1024] [--repeat 1]
 *                                      [--timing fast|default] [--deadline 45]
 *                                      [--interval 150] [--status-via api|cli]
 *
 * Defaults: peers 2,4,8 x shards 16,1024 (the small and the large end; add
 * 256 with --shards 16,256,1024), one run, the fast timing (heartbeat 500 ms,
 * member timeout 3 s) and a 45 s deadline per phase: about 2-5 minutes on a
 * 2-core machine, the upper end when cases miss their deadline.
 *
 * A benchmark that prints numbers, not a test. Per case:
 *  1. start the first peer with the job (--shards S --epochs 100000 --hidden 8
 *     --batch-size 16) and wait until `peer status --json` shows its address;
 *  2. start the N-1 others at once with --join <first peer's address>;
 *  3. "converge": time from the last spawn until every peer's status shows the
 *     same `shards.owners` (sorted entries), every owner one of the N peer ids,
 *     `shards.unowned === 0`, and exactly the N peers as live members;
 *  4. SIGKILL the last peer (never the first); "reassign": time from the kill
 *     until the N-1 survivors agree in the same way on an assignment without it.
 *     The dead peer's shards are free only once its membership times out, so
 *     reassign >= the member timeout, which is printed alongside.
 * Each phase has a deadline; a case that misses it is printed as such.
 *
 * Polling: all peers in parallel every --interval ms. By default the poll uses
 * the control API client that `peer status --json` uses (node/api/client.ts,
 * the same JSON object) from inside this process, because spawning one
 * `peer status` process per peer per poll costs ~0.2-0.4 CPU-seconds each and
 * would swamp a small machine; `--status-via cli` spawns the real command.
 * Addresses are always read with `peer status --json`.
 *
 * The peers train a tiny model all the while, so on a small machine CPU
 * contention between them (and their start-up: loading TensorFlow.js) is part
 * of what is measured.
 */
import { joinTokenOf } from '../node/security/index.ts'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ApiClient } from '../node/api/client.ts'
import { spawnPeer, tempDir } from '../test/helpers/peer-process.ts'
import type { PeerChild } from '../test/helpers/peer-process.ts'
import { LOCAL, statusOf } from '../test/helpers/swarm.ts'
import type { StatusJson } from '../test/helpers/swarm.ts'

const { values: args } = parseArgs({
  options: {
    peers: { type: 'string', default: '2,4,8' },
    shards: { type: 'string', default: '16,1024' },
    repeat: { type: 'string', default: '1' },
    timing: { type: 'string', default: 'fast' },
    deadline: { type: 'string', default: '45' },
    interval: { type: 'string', default: '150' },
    'status-via': { type: 'string', default: 'api' }
  }
})

function intList (flag: string, value: string, min: number, max: number): number[] {
  const list = value.split(',').map(s => Number(s.trim()))
  for (const n of list) {
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${flag}: ${value}: each value must be an integer from ${min} to ${max}`)
  }
  return list
}

const PEERS = intList('peers', args.peers, 2, 8)
const SHARDS = intList('shards', args.shards, 1, 100_000)
const REPEAT = intList('repeat', args.repeat, 1, 100)[0]
const DEADLINE_MS = Number(args.deadline) * 1000
const INTERVAL_MS = Number(args.interval)
if (!(DEADLINE_MS > 0) || !(INTERVAL_MS > 0)) throw new Error('--deadline and --interval must be positive numbers')
const TIMINGS = { fast: { heartbeatMs: 500, memberTimeoutMs: 3000 }, default: { heartbeatMs: 1000, memberTimeoutMs: 5000 } }
if (args.timing !== 'fast' && args.timing !== 'default') throw new Error(`--timing must be fast or default, not ${args.timing}`)
const TIMING = TIMINGS[args.timing]
const VIA = args['status-via']
if (VIA !== 'api' && VIA !== 'cli') throw new Error(`--status-via must be api or cli, not ${VIA}`)

const JOB = ['--epochs', '100000', '--hidden', '8', '--batch-size', '16']
const TIMING_FLAGS = args.timing === 'fast' ? ['--heartbeat-ms', String(TIMING.heartbeatMs), '--member-timeout', String(TIMING.memberTimeoutMs)] : []

// ---------------------------------------------------------------- processes

interface Running { name: string, dataDir: string, proc: PeerChild, client?: ApiClient, killed: boolean }

/** Everything started, so that Ctrl-C and errors can clean up. */
const live = new Set<Running>()
const dirs = new Set<() => Promise<void>>()

async function killAll (): Promise<void> {
  const all = [...live]
  live.clear()
  for (const p of all) if (p.proc.child.exitCode === null && p.proc.child.signalCode === null) p.proc.child.kill('SIGKILL')
  await Promise.all(all.map(async p => await p.proc.exited(10_000).catch(() => {})))
}

async function cleanup (): Promise<void> {
  await killAll()
  const removes = [...dirs]
  dirs.clear()
  await Promise.all(removes.map(async r => await r().catch(() => {})))
}

let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return
    interrupted = true
    process.stderr.write(`\n${sig}: stopping the peers and removing their data dirs…\n`)
    cleanup().finally(() => process.exit(130))
  })
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** One peer's status, the same object `peer status --json` prints; undefined when it does not answer (yet). */
async function poll (p: Running): Promise<StatusJson | undefined> {
  if (VIA === 'cli') return await statusOf(p.dataDir).catch(() => undefined)
  try {
    p.client ??= await ApiClient.fromDataDir(p.dataDir)
    return await p.client.status(AbortSignal.timeout(5000)) as unknown as StatusJson
  } catch {
    p.client = undefined // api.json may not be written yet, or be a previous one
    return undefined
  }
}

// ---------------------------------------------------------------- agreement

const canonical = (o: Record<string, string | null>): string =>
  JSON.stringify(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))

/** Undefined when all agree on a complete assignment to exactly `ids`; else why not (short). */
function disagreement (statuses: Array<StatusJson | undefined>, ids: string[], shards: number): string | undefined {
  const missing = statuses.filter(s => s === undefined).length
  if (missing > 0) return `${missing} peer(s) not answering`
  const all = statuses as StatusJson[]
  const why: string[] = []
  const maps = new Set(all.map(s => canonical(s.shards.owners)))
  if (maps.size > 1) why.push(`${maps.size} distinct owner maps`)
  const idSet = new Set(ids)
  const unowned = all.map(s => s.shards.unowned)
  if (unowned.some(u => u !== 0)) why.push(`unowned ${unowned.join('/')}`)
  const sizes = all.map(s => Object.keys(s.shards.owners).length)
  if (sizes.some(n => n !== shards)) why.push(`owners sizes ${sizes.join('/')} of ${shards}`)
  const strangers = all.map(s => Object.values(s.shards.owners).filter(o => o === null || !idSet.has(o)).length)
  if (strangers.some(n => n > 0)) why.push(`shards owned by null/non-live ${strangers.join('/')}`)
  const liveCounts = all.map(s => {
    const liveIds = s.members.filter(m => m.live).map(m => m.peerId)
    return liveIds.length === ids.length && liveIds.every(id => idSet.has(id)) ? -1 : liveIds.length
  })
  if (liveCounts.some(n => n !== -1)) why.push(`live members ${liveCounts.map(n => n === -1 ? 'ok' : String(n)).join('/')} (want ${ids.length})`)
  if (why.length === 0) return undefined
  // context for a reader of a case that never converged
  why.push(`connected peers ${all.map(s => s.peers.length).join('/')}`)
  const m = all.map(s => s.manifest)
  if (m.every(x => x !== null)) {
    const sum = (k: 'deltasReceived' | 'deltasRejected' | 'syncs' | 'syncsFailed'): number => m.reduce((a, x) => a + (x?.[k] ?? 0), 0)
    why.push(`manifest deltas received ${sum('deltasReceived')} rejected ${sum('deltasRejected')}, syncs ${sum('syncs')} failed ${sum('syncsFailed')} (all peers)`)
  }
  return why.join('; ')
}

/**
 * Polls `peers` every INTERVAL_MS until they agree on `ids`; returns the
 * seconds from `since` to the end of the first poll round that showed it,
 * or the last reason when the deadline passed.
 */
async function untilAgreed (peers: Running[], ids: string[], shards: number, since: number): Promise<{ seconds: number } | { never: string }> {
  const deadline = since + DEADLINE_MS
  let last = 'never polled'
  while (performance.now() < deadline && !interrupted) {
    const started = performance.now()
    const statuses = await Promise.all(peers.map(poll))
    const why = disagreement(statuses, ids, shards)
    const ended = performance.now()
    if (why === undefined) return { seconds: (ended - since) / 1000 }
    last = why
    const wait = INTERVAL_MS - (ended - started)
    if (wait > 0) await sleep(wait)
  }
  return { never: last }
}

/** Polls until every peer answers; returns seconds from `since`, or undefined at the deadline. */
async function untilAllAnswer (peers: Running[], since: number): Promise<number | undefined> {
  const deadline = since + DEADLINE_MS
  while (performance.now() < deadline && !interrupted) {
    const statuses = await Promise.all(peers.map(poll))
    if (statuses.every(s => s !== undefined)) return (performance.now() - since) / 1000
    await sleep(INTERVAL_MS)
  }
  return undefined
}

// ---------------------------------------------------------------- one case

interface Row {
  n: number
  shards: number
  run: number
  /** Seconds from the last spawn until every peer's API answers (start-up). */
  up: number | undefined
  converge: { seconds: number } | { never: string } | { skipped: string }
  reassign: { seconds: number } | { never: string } | { skipped: string }
  note?: string
}

function started (root: string, name: string, extra: string[]): Running {
  const dataDir = join(root, name)
  const proc = spawnPeer(['start', '--data-dir', dataDir, ...LOCAL, ...TIMING_FLAGS, ...extra])
  const p: Running = { name, dataDir, proc, killed: false }
  live.add(p)
  return p
}

function exitedEarly (peers: Running[]): string | undefined {
  const dead = peers.filter(p => !p.killed && (p.proc.child.exitCode !== null || p.proc.child.signalCode !== null))
  if (dead.length === 0) return undefined
  const tail = (text: string): string => text.trim().split('\n').slice(-3).map(l => l.slice(0, 160)).join(' | ')
  return dead.map(p => `${p.name} exited (${p.proc.child.exitCode ?? p.proc.child.signalCode}); stdout: ${tail(p.proc.stdout)}; stderr: ${tail(p.proc.stderr)}`).join('; ')
}

async function runCase (n: number, shards: number, run: number): Promise<Row> {
  const row: Row = { n, shards, run, up: undefined, converge: { skipped: '' }, reassign: { skipped: '' } }
  const dir = await tempDir('peer-bench-manifest-')
  dirs.add(dir.remove)
  try {
    const first = started(dir.path, 'p0', ['--shards', String(shards), ...JOB])
    // the first peer's address, from `peer status --json` as a user would read it
    const t = performance.now()
    let address: string | undefined
    let firstId: string | undefined
    while (performance.now() - t < DEADLINE_MS && !interrupted) {
      const st = await statusOf(first.dataDir).catch(() => undefined)
      if (st !== undefined && st.addresses.length > 0 && typeof st.peerId === 'string') {
        address = st.addresses[0]
        firstId = st.peerId
        break
      }
      const early = exitedEarly([first])
      if (early !== undefined) throw new Error(early)
      await sleep(INTERVAL_MS)
    }
    if (address === undefined || firstId === undefined) throw new Error(`the first peer did not listen within ${DEADLINE_MS / 1000} s`)

    const others: Running[] = []
    // a new swarm is private: joiners need its token (or --open with an address for an open swarm)
    const token = await joinTokenOf(first.dataDir, [address])
    const joinArgs = token !== null ? ['--join', token] : ['--open', '--join', address]
    for (let i = 1; i < n; i++) others.push(started(dir.path, `p${i}`, joinArgs))
    const spawned = performance.now()
    const peers = [first, ...others]

    row.up = await untilAllAnswer(peers, spawned)
    if (row.up === undefined) {
      row.converge = { never: `not all peers answered; ${exitedEarly(peers) ?? ''}` }
      return row
    }
    // every peer id, from each peer's own status
    const ids: string[] = []
    for (const p of peers) {
      const st = await poll(p)
      if (st === undefined) throw new Error(`${p.name} stopped answering`)
      ids.push(st.peerId)
    }
    const converge = await untilAgreed(peers, ids, shards, spawned)
    row.converge = converge
    if (!('seconds' in converge)) {
      const early = exitedEarly(peers)
      if (early !== undefined) row.converge = { never: `${converge.never}; ${early}` }
      row.reassign = { skipped: 'no convergence' }
      return row
    }

    // SIGKILL the last peer (never the first: it is the one the others joined through)
    const victim = peers[peers.length - 1]
    const survivors = peers.slice(0, -1)
    const victimId = ids[ids.length - 1]
    victim.killed = true
    victim.proc.child.kill('SIGKILL')
    const killedAt = performance.now()
    const reassign = await untilAgreed(survivors, ids.filter(id => id !== victimId), shards, killedAt)
    row.reassign = reassign
    if (!('seconds' in reassign)) {
      const early = exitedEarly(survivors)
      if (early !== undefined) row.reassign = { never: `${reassign.never}; ${early}` }
    }
    return row
  } finally {
    await killAll()
    dirs.delete(dir.remove)
    await dir.remove().catch(() => {})
  }
}

// ---------------------------------------------------------------- main

function cell (r: Row['converge']): string {
  if ('seconds' in r) return r.seconds.toFixed(2)
  if ('never' in r) return `never (>${DEADLINE_MS / 1000}s)`
  return '-'
}

const cases = PEERS.flatMap(n => SHARDS.map(s => ({ n, s })))
const out = (line = ''): void => { process.stdout.write(`${line}\n`) }

out('peer manifest convergence benchmark')
out(`machine: ${cpus().length} CPU core(s), Node ${process.version}; peers are real \`peer start\` processes on 127.0.0.1 (--no-mdns)`)
out(`timing: ${args.timing === 'fast' ? '--heartbeat-ms 500 --member-timeout 3000 (fast; the defaults are 1000/5000, use --timing default)' : 'the defaults, --heartbeat-ms 1000 --member-timeout 5000'}`)
out(`job: --shards S ${JOB.join(' ')} (the peers TRAIN this tiny model while the bench runs: CPU contention between`)
out(`     ${Math.max(...PEERS)} processes on ${cpus().length} core(s), and their start-up, is part of what is measured)`)
out(`cases: peers ${PEERS.join(',')} x shards ${SHARDS.join(',')} x ${REPEAT} run(s); deadline ${DEADLINE_MS / 1000} s per phase; poll every ${INTERVAL_MS} ms, all peers in parallel,`)
out(`       via ${VIA === 'api' ? 'the control API client `peer status --json` uses (in-process; --status-via cli spawns the command)' : 'a `peer status --json` process per peer'}`)
out('times are taken at the end of the first poll round that shows the condition (resolution: one poll interval plus a round trip)')
out(`load average at start: ${loadavg().map(l => l.toFixed(2)).join(' ')} (anything else running on the machine skews the numbers)`)
out('up: last spawn -> every peer answers; converge: last spawn -> all agree on a complete assignment to the N live peers;')
out('reassign: SIGKILL of the last peer -> the N-1 survivors agree without it (cannot beat the member timeout)')
out()

const rows: Row[] = []
const header = ['N', 'S', 'run', 'up s', 'converge s', 'reassign s', 'member timeout s']
const widths = [3, 6, 4, 7, 18, 18, 16]
const fmt = (cols: string[]): string => cols.map((c, i) => c.padStart(widths[i])).join('  ')
out(fmt(header))
out(fmt(widths.map(w => '-'.repeat(w))))
const began = performance.now()
try {
  for (const { n, s } of cases) {
    for (let run = 1; run <= REPEAT; run++) {
      if (interrupted) break
      let row: Row
      try {
        row = await runCase(n, s, run)
      } catch (err) {
        row = { n, shards: s, run, up: undefined, converge: { never: `error: ${(err as Error).message}` }, reassign: { skipped: 'error' } }
      }
      rows.push(row)
      out(fmt([String(n), String(s), String(run), row.up === undefined ? '-' : row.up.toFixed(2), cell(row.converge), cell(row.reassign), (TIMING.memberTimeoutMs / 1000).toFixed(1)]))
    }
  }
} finally {
  await cleanup()
}
// on a signal the handler prints nothing more and exits
const notes = rows.flatMap(r => [
  ...('never' in r.converge ? [`N=${r.n} S=${r.shards} run ${r.run}: never converged: ${r.converge.never}`] : []),
  ...('never' in r.reassign ? [`N=${r.n} S=${r.shards} run ${r.run}: never reassigned: ${r.reassign.never}`] : [])
])
if (!interrupted) out()
if (!interrupted && notes.length > 0) {
  out('cases that missed their deadline (last state seen):')
  for (const line of notes) out(`  ${line}`)
  out()
}
if (!interrupted) out(`load average at end: ${loadavg().map(l => l.toFixed(2)).join(' ')}`)
if (!interrupted) out(`total ${((performance.now() - began) / 1000).toFixed(0)} s`)
