/**
 * Partitions in the network lab (test/helpers/netlab.ts): real `peer start` processes, one per network
 * namespace, split by moving their bridge ports apart, then healed. docs/rounds.md ("Partitions") says what
 * must happen:
 *
 * - 1|2 for 30 s: the cut-off member holds (its step stays put, `partition` is set), the two others train on;
 *   after the heal it is back in one ring of three within 15 s, the two never took its state, their steps
 *   never went back, and all three hold one weights hash at a common round.
 * - 2|2 for 20 s: the side holding the lowest peer id of the last group trains on, the other side holds;
 *   after the heal one ring of four within 20 s, one model, and the training side never took the held side's
 *   state.
 *
 * Waits are deadlines on conditions; the only fixed waits are the faults' own durations. Skipped, saying
 * why, where namespaces cannot be made. `NETLAB_LOG_LEVEL=debug` passes `--log-level debug` to the peers
 * (their stderr tails are printed when a test fails; with `NETLAB_LOG_DIR=DIR`, their whole stderr goes to
 * DIR/<host>.log).
 */
import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLab, labAvailable } from './helpers/netlab.ts'
import type { NetLab } from './helpers/netlab.ts'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

/** Fast failure detection: a member silent for 2.5 s is dead, a round waits 3 s for readies, a stalled ring step aborts within 2 s. */
const TIMING = ['--heartbeat-ms', '500', '--member-timeout', '2500', '--round-timeout', '3000', '--step-timeout', '2000', '--progress-every', '60']
/** A small job that outlasts the test (the peers are killed at the end). */
const JOB = ['--epochs', '500', '--hidden', '32', '--batch-size', '32', '--shards', '12', '--seed', '7', '--checkpoint-every', '200']
const LOG = process.env.NETLAB_LOG_LEVEL !== undefined ? ['--log-level', process.env.NETLAB_LOG_LEVEL] : []
/** How often the peers are looked at while a fault lasts and while waiting for the heal. */
const LOOK_MS = 500

type Sync = StatusJson['syncs'][number] & { at?: number }

interface Look {
  at: number
  label: string
  /** By host name; undefined where the peer did not answer. */
  status: Map<string, StatusJson | undefined>
}

async function skipUnlessLab (t: TestContext): Promise<boolean> {
  const reason = await labAvailable()
  if (reason !== null) t.skip(reason)
  return reason === null
}

/** A swarm with one peer per lab host, everything it was seen to say, and a short line per look for the log. */
class PartitionLab {
  readonly lab: NetLab
  readonly swarm: LocalSwarm
  readonly hosts: string[]
  readonly looks: Look[] = []
  readonly log: string[] = []
  /** Peer id by host, and host by peer id. */
  readonly idOf = new Map<string, string>()
  readonly hostOf = new Map<string, string>()

  private constructor (lab: NetLab, swarm: LocalSwarm, hosts: string[]) {
    this.lab = lab
    this.swarm = swarm
    this.hosts = hosts
  }

  /** Builds the lab, starts the first host's peer with the job and the others joining it, waits for one ring of all. */
  static async start (hosts: string[]): Promise<PartitionLab> {
    const lab = await createLab(hosts)
    let s: PartitionLab | null = null
    try {
      s = new PartitionLab(lab, await LocalSwarm.create({ place: lab.placement() }), hosts)
      const common = ['--min-peers', String(hosts.length), ...TIMING, ...LOG]
      await s.swarm.start(hosts[0], [...common, ...JOB])
      for (const h of hosts.slice(1)) await s.swarm.start(h, common, hosts[0])
      const all = await s.oneRing(hosts, 'all to train in one ring', 180_000, 5)
      for (const h of hosts) {
        const id = all.status.get(h)!.peerId
        s.idOf.set(h, id)
        s.hostOf.set(id, h)
      }
      return s
    } catch (err) {
      if (s !== null) await s.stop()
      else await lab.destroy()
      throw err
    }
  }

  short (id: string): string {
    return this.hostOf.get(id) ?? id.slice(-4)
  }

  line (s: StatusJson | undefined): string {
    if (s === undefined) return '-'
    const p = s.partition == null ? '' : ` PARTITION ${s.partition.reachable}/${s.partition.needed}`
    const ring = (s.ring?.members ?? []).map(id => this.short(id)).join(',')
    const group = s.ring?.group != null ? ` g${s.ring.group.epoch}` : ''
    return `${s.state}/${s.ring?.state ?? '-'} step ${s.training?.step ?? '-'} r${s.ring?.round ?? '-'}${group} [${ring}] conn [${s.peers.map(x => this.short(x.peerId)).sort().join(',')}]${p}`
  }

  /** Every peer's status, recorded. */
  async look (label: string): Promise<Look> {
    const got = await Promise.all(this.hosts.map(async h => await this.swarm.status(h)))
    const look: Look = { at: Date.now(), label, status: new Map(this.hosts.map((h, i) => [h, got[i]])) }
    this.looks.push(look)
    this.log.push(`${label}: ${this.hosts.map(h => `${h} ${this.line(look.status.get(h))}`).join(' | ')}`)
    return look
  }

  /** Looks every LOOK_MS for `ms` (the length of a fault: a fixed wait on purpose). */
  async hold (ms: number, label: string): Promise<Look[]> {
    const t0 = Date.now()
    const seen: Look[] = []
    while (Date.now() - t0 < ms) {
      seen.push(await this.look(`${label} +${((Date.now() - t0) / 1000).toFixed(1)} s`))
      await sleep(Math.max(0, Math.min(LOOK_MS, ms - (Date.now() - t0))))
    }
    return seen
  }

  /** Waits until every host in `hosts` trains in one ring of exactly those peers, none partitioned. */
  async oneRing (hosts: string[], what: string, timeoutMs: number, minRound = 0): Promise<Look> {
    const t0 = Date.now()
    return await waitFor(what, async () => {
      const look = await this.look(`${what} +${((Date.now() - t0) / 1000).toFixed(1)} s`)
      const ss = hosts.map(h => look.status.get(h))
      if (ss.some(s => s === undefined)) return undefined
      const ids = ss.map(s => s!.peerId).sort().join()
      const ok = ss.every(s => (s!.state === 'training' || s!.state === 'reducing') && [...(s!.ring?.members ?? [])].sort().join() === ids && s!.partition == null && (s!.ring?.round ?? 0) >= minRound)
      return ok ? look : undefined
    }, timeoutMs, LOOK_MS)
  }

  /** Waits for a round at or after `minRound` whose weights hash every host reports; the hashes there by host. */
  async commonHash (minRound: number, timeoutMs: number): Promise<{ round: number, hashes: Map<string, string> }> {
    return await waitFor(`a round ≥ ${minRound} whose weights hash every peer reports`, async () => {
      const look = await this.look('hashes')
      const maps = this.hosts.map(h => new Map((look.status.get(h)?.training?.hashes ?? []).map(x => [x.round, x.hash])))
      const rounds = [...maps[0].keys()].filter(r => r >= minRound && maps.every(m => m.has(r)))
      if (rounds.length === 0) return undefined
      const round = Math.max(...rounds)
      this.log.push(`hashes at round ${round}: ${this.hosts.map((h, i) => `${h} ${maps[i].get(round)}`).join(' ')}`)
      return { round, hashes: new Map(this.hosts.map((h, i) => [h, maps[i].get(round)!])) }
    }, timeoutMs, LOOK_MS)
  }

  /**
   * Every host's TCP connections to the other hosts (`ss -tno`: send queue, peer, retransmit timer), with the
   * host names for the addresses: evidence of connections that hang after a heal.
   */
  async sockets (): Promise<string> {
    const names = new Map(this.hosts.map(h => [this.lab.address(h), h]))
    const out: string[] = []
    for (const h of this.hosts) {
      const r = await this.lab.exec(h, 'ss', ['-tnoH', 'dst', '10.77.0.0/24'])
      const lines = r.stdout.split('\n').filter(l => l.trim() !== '').map(l => l.replace(/10\.77\.0\.\d+/g, a => names.get(a) ?? a).replace(/\s+/g, ' '))
      out.push(`${h}: ${lines.length} connections\n    ${lines.join('\n    ')}`)
    }
    return out.join('\n')
  }

  /** The steps a host reported in the looks since `from` (ms since the epoch). */
  steps (host: string, from = 0): number[] {
    return this.looks.filter(l => l.at >= from).map(l => l.status.get(host)?.training?.step).filter((x): x is number => x !== undefined)
  }

  /** The syncs a host reports (its last look), made since `from`. */
  syncsSince (host: string, from: number): Sync[] {
    const last = [...this.looks].reverse().find(l => l.status.get(host) !== undefined)
    return ((last?.status.get(host)?.syncs ?? []) as Sync[]).filter(x => (x.at ?? Infinity) >= from)
  }

  /**
   * For a failure: each peer's last status in detail (ring events, member events, syncs, partition, redials)
   * and the tail of its stderr; with NETLAB_LOG_DIR set, every peer's whole stderr goes to a file there.
   */
  async dump (chars = 3000): Promise<string> {
    const out: string[] = []
    const dir = process.env.NETLAB_LOG_DIR
    if (dir !== undefined) await mkdir(dir, { recursive: true })
    for (const p of this.swarm.peers) {
      const last = [...this.looks].reverse().find(l => l.status.get(p.name) !== undefined)?.status.get(p.name) as (StatusJson & { memberEvents?: unknown[] }) | undefined
      const short = (x: unknown): string => JSON.stringify(x).replace(/12D3KooW[1-9A-HJ-NP-Za-km-z]+/g, id => this.short(id))
      out.push(`--- ${p.name} (exit ${p.proc.child.exitCode ?? 'running'}): ${this.line(last)}`)
      if (last !== undefined) {
        out.push(`  ring events: ${short(last.ring?.events.slice(-12))}`)
        out.push(`  member events: ${short(last.memberEvents?.slice(-8))}`)
        out.push(`  syncs: ${short(last.syncs)}`)
        out.push(`  partition: ${short(last.partition)} group: ${short(last.ring?.group)} redials: ${short(last.network?.reconnect)}`)
      }
      out.push(`  stderr (tail): ${p.proc.stderr.slice(-chars)}`)
      if (dir !== undefined) await writeFile(join(dir, `${p.name}.log`), p.proc.stderr)
    }
    return out.join('\n')
  }

  async stop (): Promise<void> {
    try {
      await this.swarm.stopAll()
    } finally {
      await this.lab.destroy()
    }
  }
}

/** Asserts a host's steps never went down. */
function neverDecrease (s: PartitionLab, host: string, from: number): void {
  const steps = s.steps(host, from)
  for (let i = 1; i < steps.length; i++) assert.ok(steps[i] >= steps[i - 1], `${host}'s step went from ${steps[i - 1]} to ${steps[i]}`)
}

/** Asserts every sync entry has the documented shape, and that none a host adopted since `from` came from `others`. */
function neverAdoptedFrom (s: PartitionLab, hosts: string[], others: string[], from: number): void {
  const ids = new Set(others.map(h => s.idOf.get(h)!))
  for (const h of hosts) {
    const syncs = s.syncsSince(h, from)
    for (const x of syncs) {
      assert.ok(Array.isArray(x.from), `${h}: sync without from[]: ${JSON.stringify(x)}`)
      assert.equal(typeof x.adopted, 'boolean', `${h}: sync without adopted: ${JSON.stringify(x)}`)
    }
    const bad = syncs.filter(x => x.adopted === true && x.from!.some(id => ids.has(id)))
    assert.deepEqual(bad, [], `${h} adopted state from ${others.join(',')}`)
  }
}

/**
 * What a held host did while the fault lasted: its step never moved once `partition` was set (and by at most
 * one round in flight at the split before that), and `partition` was set, and at the end of the split said it
 * reaches fewer members than it needs. `untrue` lists the looks where `partition` said otherwise.
 */
function held (s: PartitionLab, host: string, during: Look[]): { step: number, partition: NonNullable<StatusJson['partition']>, untrue: string[] } {
  const seen = during.map(l => l.status.get(host)).filter((x): x is StatusJson => x !== undefined)
  assert.ok(seen.length > 0, `${host} answered no status during the split`)
  const first = seen[0].training!.step
  const marked = seen.findIndex(x => x.partition != null)
  assert.ok(marked >= 0, `${host} never said it was partitioned: ${seen.map(x => s.line(x)).join(' ; ')}`)
  const step = seen[marked].training!.step
  assert.ok(step <= first + 1, `${host} advanced from ${first} to ${step} before it said it was partitioned`)
  for (const x of seen.slice(marked)) assert.equal(x.training!.step, step, `${host} advanced while partitioned: ${s.line(x)}`)
  const last = seen[seen.length - 1]
  assert.ok(last.partition != null, `${host} no longer partitioned at the end of the split: ${s.line(last)}`)
  const p = last.partition
  assert.equal(typeof p.reachable, 'number')
  assert.equal(typeof p.needed, 'number')
  assert.ok(p.reachable < p.needed, `${host} at the end of the split: reachable ${p.reachable}, needed ${p.needed}`)
  const untrue = during.filter(l => { const x = l.status.get(host)?.partition; return x != null && x.reachable >= x.needed }).map(l => `${l.label}: reachable ${l.status.get(host)!.partition!.reachable} needed ${l.status.get(host)!.partition!.needed}`)
  return { step, partition: p, untrue }
}

/**
 * The held side never claims to reach enough members: after a split its TCP connections stay open (nothing
 * refuses them) until libp2p gives up on them, about 10 s here, so it must count whom it heard, not whom it
 * is connected to.
 */
async function partitionTellsTheTruth (t: TestContext, host: string, untrue: string[]): Promise<void> {
  await t.test(`${host}'s partition.reachable never counts members across the split`, () => {
    assert.deepEqual(untrue, [], `${host} said it reaches enough members while partitioned`)
  })
}

/**
 * Asserts that a held host adopted, after the heal, a state of a round at least `round` (where the training side
 * was at the end of the split): the winning state, whether fetched from the training side or from a held
 * member that had already taken it.
 */
function tookWinning (s: PartitionLab, host: string, healedAt: number, round: number): void {
  const syncs = s.syncsSince(host, healedAt)
  assert.ok(syncs.some(x => x.adopted === true && x.round >= round), `${host} took the winning state (round ≥ ${round}) after the heal: ${JSON.stringify(syncs.map(x => ({ ...x, from: (x.from ?? []).map(id => s.short(id)) })))}`)
}

/** What a training host did: no `partition` at the end, and its step grew over the second half of the split. */
function trainedOn (s: PartitionLab, host: string, during: Look[]): { from: number, to: number, round: number } {
  const seen = during.map(l => l.status.get(host)).filter((x): x is StatusJson => x !== undefined)
  assert.ok(seen.length > 1, `${host} answered too few statuses during the split`)
  const mid = seen[Math.floor(seen.length / 2)].training!.step
  const last = seen[seen.length - 1]
  assert.equal(last.partition ?? null, null, `${host} partitioned at the end of the split: ${s.line(last)}`)
  assert.ok(last.training!.step > mid, `${host} did not train on in the second half of the split (step ${mid} → ${last.training!.step})`)
  return { from: seen[0].training!.step, to: last.training!.step, round: last.ring?.round ?? 0 }
}

/**
 * What was seen when a member cut off by a split comes back (issue 12, for the lead): its libp2p connections
 * come back and it takes the majority's state within about a second, but every ring of three then aborts
 * ("neighbours not connected within 5000 ms" on two members, "reduce-scatter step 1/2 took longer than 2000
 * ms" on the third) and the proposer falls back to the two, until about 25 s after the heal. `ss` 16 s after
 * the heal shows why: the ring's persistent data socket c→b from before the split is still ESTABLISHED on both
 * ends with 171 kB unacknowledged in c's send queue and 7 retransmissions behind it; TCP's retransmit timer
 * has backed off exponentially during the 30 s the link dropped everything (0.2, 0.4 … 25.6 s), so nothing
 * moves on that socket until it next fires, and the ring keeps reusing it because it still reads as open.
 * (A 20 s split happens to end just before a retransmission: the 2|2 test is back within about 10 s.)
 */

/** The ring round (the highest of the hosts') at a look. */
function roundAt (look: Look): number {
  return Math.max(...[...look.status.values()].map(x => x?.ring?.round ?? 0))
}

test('a 1|2 partition for 30 s: the cut-off member holds, the two train on; after the heal one ring of three within 15 s and one model', { timeout: 300_000 }, async t => {
  if (!await skipUnlessLab(t)) return
  const t0 = Date.now()
  const s = await PartitionLab.start(['a', 'b', 'c'])
  let ok = false
  try {
    t.diagnostic(`three in one ring after ${((Date.now() - t0) / 1000).toFixed(0)} s`)
    await s.lab.split([['a', 'b'], ['c']])
    const splitAt = Date.now()
    const during = await s.hold(30_000, 'split ab|c')
    await s.lab.heal()
    const healedAt = Date.now()

    const c = held(s, 'c', during)
    const a = trainedOn(s, 'a', during)
    const b = trainedOn(s, 'b', during)
    t.diagnostic(`during the split: c held at step ${c.step} (partition at the end: reachable ${c.partition.reachable} needed ${c.partition.needed}; ${c.untrue.length} of ${during.length} looks said reachable ≥ needed); a ${a.from} → ${a.to}, b ${b.from} → ${b.to}`)
    await partitionTellsTheTruth(t, 'c', c.untrue)

    // looked for past the 15 s asked (up to 45 s), to say how long it took when it takes longer
    let back: Look | null = null
    let sockets = ''
    const late = setTimeout(() => { void s.sockets().then(x => { sockets = x }) }, 16_000)
    try {
      back = await s.oneRing(['a', 'b', 'c'], 'one ring of three after the heal', 45_000)
    } catch {
    } finally {
      clearTimeout(late)
    }
    const backMs = back === null ? null : back.at - healedAt
    t.diagnostic(`one ring of three ${backMs ?? 'not within 45 000'} ms after the heal`)
    if (sockets !== '') t.diagnostic(`TCP connections between the hosts 16 s after the heal:\n${sockets}`)

    // the majority never goes back and never takes the cut-off member's state, whether or not it is back yet
    neverDecrease(s, 'a', splitAt)
    neverDecrease(s, 'b', splitAt)
    neverAdoptedFrom(s, ['a', 'b'], ['c'], splitAt)
    tookWinning(s, 'c', healedAt, Math.min(a.round, b.round))

    const inTime = backMs !== null && backMs <= 15_000
    await t.test('c is back in one ring of three within 15 s of the heal', () => {
      assert.ok(inTime, `back after ${backMs ?? 'more than 45 000'} ms`)
    })
    await t.test('all three hold one model once c is back', async () => {
      assert.ok(back !== null, 'c not back within 45 s')
      const model = await s.commonHash(roundAt(back), 60_000)
      t.diagnostic(`round ${model.round}: ${[...model.hashes].map(([h, x]) => `${h} ${x}`).join(', ')}`)
      assert.equal(new Set(model.hashes.values()).size, 1, `one model at round ${model.round}: ${[...model.hashes].map(([h, x]) => `${h} ${x}`).join(', ')}`)
    })
    ok = true
  } finally {
    if (!ok) t.diagnostic(`${s.log.join('\n')}\n${await s.dump()}`)
    await s.stop()
    t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(0)} s in all`)
  }
})

test('a 2|2 partition for 20 s: the side with the lowest peer id trains on, the other holds; after the heal one ring of four within 20 s and one model', { timeout: 300_000 }, async t => {
  if (!await skipUnlessLab(t)) return
  const t0 = Date.now()
  const s = await PartitionLab.start(['h1', 'h2', 'h3', 'h4'])
  let ok = false
  try {
    // p1 … p4 by peer id: p1 is the lowest, the tie-break of a 2|2 split (docs/rounds.md)
    const byId = [...s.idOf.entries()].sort(([, x], [, y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([h]) => h)
    const train = byId.slice(0, 2)
    const hold = byId.slice(2)
    t.diagnostic(`four in one ring after ${((Date.now() - t0) / 1000).toFixed(0)} s; by peer id p1..p4 = ${byId.join(', ')}: ${train.join('+')} train on, ${hold.join('+')} hold`)
    await s.lab.split([train, hold])
    const splitAt = Date.now()
    const during = await s.hold(20_000, `split ${train.join('')}|${hold.join('')}`)
    await s.lab.heal()
    const healedAt = Date.now()

    const seen: string[] = []
    const untrue = new Map<string, string[]>()
    for (const h of hold) {
      const x = held(s, h, during)
      untrue.set(h, x.untrue)
      seen.push(`${h} held at step ${x.step} (at the end reachable ${x.partition.reachable} needed ${x.partition.needed}; ${x.untrue.length} of ${during.length} looks said reachable ≥ needed)`)
    }
    const trained: number[] = []
    for (const h of train) {
      const x = trainedOn(s, h, during)
      trained.push(x.round)
      seen.push(`${h} ${x.from} → ${x.to}`)
    }
    t.diagnostic(`during the split: ${seen.join('; ')}`)
    for (const h of hold) await partitionTellsTheTruth(t, h, untrue.get(h)!)

    const back = await s.oneRing(s.hosts, 'one ring of four after the heal', 20_000)
    const backMs = back.at - healedAt
    t.diagnostic(`one ring of four ${backMs} ms after the heal`)
    assert.ok(backMs <= 20_000, `back after ${backMs} ms`)

    const model = await s.commonHash(roundAt(back), 60_000)
    t.diagnostic(`round ${model.round}: ${[...model.hashes].map(([h, x]) => `${h} ${x}`).join(', ')}`)
    for (const h of train) neverDecrease(s, h, splitAt)
    neverAdoptedFrom(s, train, hold, splitAt)
    for (const h of hold) tookWinning(s, h, healedAt, Math.min(...trained))
    assert.equal(new Set(model.hashes.values()).size, 1, `one model at round ${model.round}: ${[...model.hashes].map(([h, x]) => `${h} ${x}`).join(', ')}`)
    ok = true
  } finally {
    if (!ok) t.diagnostic(`${s.log.join('\n')}\n${await s.dump()}`)
    await s.stop()
    t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(0)} s in all`)
  }
})
