/**
 * Real network faults, in network namespaces (test/helpers/netlab.ts): the
 * lab itself (hosts reach each other; a cut link and a split make them
 * unreachable, restore and heal bring them back; a bandwidth limit holds),
 * then a swarm of 3 `peer start` processes, one in each namespace, whose
 * third member's link is cut past the member timeout and restored: the
 * connections come back in both directions within 15 s and the job ends with
 * one model on every peer. Skipped, saying why, where namespaces cannot be
 * made (not root, no iproute2).
 */
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createLab, labAvailable } from './helpers/netlab.ts'
import type { NetLab } from './helpers/netlab.ts'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

const PORT = 7000

/** Listens on the host's lab address: answers a probe, or counts what it is sent and says how much at the end. */
const SERVER = `
const net = require('node:net')
net.createServer(c => {
  let bytes = 0
  c.on('data', d => { bytes += d.length })
  c.on('end', () => { c.end(String(bytes)) })
  c.on('error', () => {})
}).listen(Number(process.argv[2]), process.argv[1], () => process.stdout.write('listening\\n'))
`

/** Connects to host:port within a timeout: prints connected, timeout, or the error's code. */
const PROBE = `
const s = require('node:net').connect(Number(process.argv[2]), process.argv[1])
const done = what => { process.stdout.write(what); process.exit(0) }
s.on('connect', () => done('connected'))
s.on('error', e => done(e.code ?? e.message))
setTimeout(() => done('timeout'), Number(process.argv[3]))
`

/** Sends n bytes to host:port; prints the ms from connecting to the server's count, and the count. */
const SEND = `
const s = require('node:net').connect(Number(process.argv[2]), process.argv[1])
let t0 = 0
let reply = ''
s.on('connect', () => { t0 = performance.now(); s.end(Buffer.alloc(Number(process.argv[3]), 1)) })
s.on('data', d => { reply += d })
s.on('end', () => { process.stdout.write(JSON.stringify({ ms: performance.now() - t0, bytes: Number(reply) })); process.exit(0) })
s.on('error', e => { process.stderr.write(String(e)); process.exit(1) })
`

async function skipUnlessLab (t: TestContext): Promise<boolean> {
  const reason = await labAvailable()
  if (reason !== null) t.skip(reason)
  return reason === null
}

async function startServers (lab: NetLab): Promise<void> {
  await Promise.all(lab.hosts.map(async h => {
    const child = lab.spawn(h, process.execPath, ['-e', SERVER, lab.address(h), String(PORT)])
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('listening')) resolve() })
      child.on('exit', code => { reject(new Error(`server in ${h} exited (${code})`)) })
    })
  }))
}

async function probe (lab: NetLab, from: string, to: string, timeoutMs = 1000): Promise<string> {
  const r = await lab.exec(from, process.execPath, ['-e', PROBE, lab.address(to), String(PORT), String(timeoutMs)])
  return r.stdout
}

/** Probes every pair given, in parallel, and returns what each saw (`a→b: connected`). */
async function probes (lab: NetLab, pairs: Array<[string, string]>): Promise<Record<string, string>> {
  const seen = await Promise.all(pairs.map(async ([f, t]) => await probe(lab, f, t)))
  return Object.fromEntries(pairs.map(([f, t], i) => [`${f}→${t}`, seen[i]]))
}

function expectAll (seen: Record<string, string>, connected: boolean, what: string): void {
  for (const [pair, r] of Object.entries(seen)) assert.equal(r === 'connected', connected, `${what}: ${pair} ${r} (all: ${JSON.stringify(seen)})`)
}

async function send (lab: NetLab, from: string, to: string, bytes: number): Promise<number> {
  const r = await lab.exec(from, process.execPath, ['-e', SEND, lab.address(to), String(PORT), String(bytes)], 60_000)
  assert.equal(r.code, 0, `send ${from}→${to}: ${r.stderr}`)
  const out = JSON.parse(r.stdout) as { ms: number, bytes: number }
  assert.equal(out.bytes, bytes)
  return out.ms
}

test('the lab: hosts reach each other; cut, restore, split 2|1 and 2|2, heal; a bandwidth limit holds both ways', async t => {
  if (!await skipUnlessLab(t)) return
  const lab = await createLab(['a', 'b', 'c', 'd'])
  try {
    await startServers(lab)
    const all: Array<[string, string]> = [['a', 'b'], ['b', 'a'], ['a', 'c'], ['c', 'd'], ['d', 'a']]
    expectAll(await probes(lab, all), true, 'one bridge')

    await lab.cut('a')
    expectAll(await probes(lab, [['a', 'b'], ['b', 'a'], ['c', 'a']]), false, 'a cut')
    expectAll(await probes(lab, [['b', 'c'], ['c', 'd']]), true, 'the others while a is cut')
    await lab.restore('a')
    await waitFor('a to be reachable again', async () => {
      const seen = await probes(lab, [['a', 'b'], ['b', 'a']])
      return Object.values(seen).every(r => r === 'connected') ? true : undefined
    }, 10_000, 100)

    // 2|1, and d in no group reaches no one
    await lab.split([['a', 'b'], ['c']])
    expectAll(await probes(lab, [['a', 'b'], ['b', 'a']]), true, '2|1 within {a,b}')
    expectAll(await probes(lab, [['a', 'c'], ['c', 'b'], ['d', 'a'], ['c', 'd']]), false, '2|1 across')
    // 2|2
    await lab.split([['a', 'b'], ['c', 'd']])
    expectAll(await probes(lab, [['a', 'b'], ['c', 'd'], ['d', 'c']]), true, '2|2 within')
    expectAll(await probes(lab, [['a', 'c'], ['d', 'b'], ['b', 'd']]), false, '2|2 across')
    await lab.heal()
    await waitFor('one network again', async () => {
      const seen = await probes(lab, all)
      return Object.values(seen).every(r => r === 'connected') ? true : undefined
    }, 10_000, 100)

    // 2 MiB at 16 Mbit/s takes about 1 s; without the limit, a small fraction of that
    const bytes = 2 * 1024 * 1024
    const mbit = 16
    const ideal = bytes * 8 / (mbit * 1e6) * 1000
    const free = await send(lab, 'a', 'b', bytes)
    await lab.limit('a', mbit)
    const out = await send(lab, 'a', 'b', bytes)
    const into = await send(lab, 'b', 'a', bytes)
    const other = await send(lab, 'b', 'c', bytes)
    await lab.limit('a', null)
    const lifted = await send(lab, 'a', 'b', bytes)
    t.diagnostic(`2 MiB: free ${free.toFixed(0)} ms; at ${mbit} Mbit/s (ideal ${ideal.toFixed(0)} ms): a→b ${out.toFixed(0)} ms, b→a ${into.toFixed(0)} ms; b→c (not limited) ${other.toFixed(0)} ms; lifted ${lifted.toFixed(0)} ms`)
    for (const [what, ms] of [['out of a', out], ['into a', into]] as const) {
      assert.ok(ms >= 0.8 * ideal, `${what}: ${ms.toFixed(0)} ms, faster than the limit allows (${ideal.toFixed(0)} ms)`)
      assert.ok(ms <= 5 * ideal, `${what}: ${ms.toFixed(0)} ms, far slower than the limit (${ideal.toFixed(0)} ms)`)
    }
    for (const [what, ms] of [['free', free], ['b→c', other], ['lifted', lifted]] as const) {
      assert.ok(ms < 0.5 * ideal, `${what}: ${ms.toFixed(0)} ms, not much faster than the limit (${ideal.toFixed(0)} ms)`)
    }
  } finally {
    await lab.destroy()
  }
  assert.ok(!(await import('node:child_process')).execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(lab.id), 'destroy removed the namespaces')
})

/** Fast failure detection: a member silent for 3 s is dead, a stalled ring step aborts within 2 s. */
const TIMING = ['--heartbeat-ms', '500', '--member-timeout', '3000', '--round-timeout', '4000', '--step-timeout', '2000', '--progress-every', '60']
/** A small job that outlasts a cut and the rejoin (about 45 s on 2 busy cores), short enough for a test. */
const JOB = ['--epochs', String(Number(process.env.NETLAB_EPOCHS ?? 12)), '--hidden', '32', '--batch-size', '32', '--shards', '12', '--seed', '7']
const NAMES = ['a', 'b', 'c']
const CUT_MS = 8000
const BACK_WITHIN_MS = 15_000

/** A swarm of 3 peers, one per namespace, and a log of what each said at every look. */
class LabSwarm {
  readonly lab: NetLab
  readonly swarm: LocalSwarm
  readonly log: string[] = []
  ids: string[] = []

  private constructor (lab: NetLab, swarm: LocalSwarm) {
    this.lab = lab
    this.swarm = swarm
  }

  static async start (): Promise<LabSwarm> {
    const lab = await createLab(NAMES)
    const s = new LabSwarm(lab, await LocalSwarm.create({ place: lab.placement() }))
    try {
      const common = ['--exit-when-done', '--min-peers', '3', ...TIMING]
      await s.swarm.start('a', [...common, ...JOB])
      await s.swarm.start('b', common, 'a')
      await s.swarm.start('c', common, 'a')
      const together = await waitFor('the three to train together', async () => {
        const all = await s.swarm.statuses(NAMES)
        return all !== undefined && all.every(x => (x.state === 'training' || x.state === 'reducing') && (x.ring?.members.length ?? 0) === 3 && (x.ring?.round ?? 0) >= 5) ? all : undefined
      }, 120_000, 500)
      s.ids = together.map(x => x.peerId)
    } catch (err) {
      await s.stop()
      throw err
    }
    return s
  }

  short (id: string): string {
    return NAMES[this.ids.indexOf(id)] ?? '?'
  }

  /** What one peer's status says, in one line: state, step, round, ring, whom it is connected to and hears, redials. */
  view (s: StatusJson | undefined): string {
    if (s === undefined) return '-'
    const peers = s.peers.map(p => this.short(p.peerId)).sort().join('')
    const live = s.members.filter(m => m.live).map(m => this.short(m.peerId)).sort().join('')
    const rc = s.network?.reconnect
    return `${s.state}/${s.ring?.state ?? '-'} step ${s.training?.step ?? '-'} round ${s.ring?.round ?? '-'} ring [${(s.ring?.members ?? []).map(id => this.short(id)).join('')}] conn [${peers}] live [${live}] redials ${rc?.attempts ?? '-'}/${rc?.reconnects ?? '-'}`
  }

  /** Every peer's status (those that answer), logged with a label. */
  async snapshot (label: string): Promise<StatusJson[]> {
    const all = await Promise.all(NAMES.map(async n => await this.swarm.status(n)))
    this.log.push(`${label}: ${NAMES.map((n, i) => `${n}: ${this.view(all[i])}`).join(' | ')}`)
    return all.filter((x): x is StatusJson => x !== undefined)
  }

  /** True when every peer is connected to the other two and, with `hears`, hears them (live in its manifest). */
  allConnected (all: StatusJson[], hears = true): boolean {
    return all.length === 3 && all.every(s => this.ids.filter(id => id !== s.peerId).every(o => s.peers.some(p => p.peerId === o) && (!hears || s.members.some(m => m.peerId === o && m.live))))
  }

  /**
   * Cuts `host` for CUT_MS (with `drop`, its side aborts its connections at once), looking every second,
   * restores it, and waits until every peer is connected to the other two again.
   */
  async cutAndRestore (host: string, drop: boolean): Promise<{ backMs: number, during: StatusJson[][], back: StatusJson[] }> {
    await this.lab.cut(host)
    const cutAt = Date.now()
    if (drop) this.log.push(`${host}: ${await this.lab.dropConnections(host)} TCP connections aborted`)
    const during: StatusJson[][] = []
    while (Date.now() - cutAt < CUT_MS) {
      during.push(await this.snapshot(`${host} cut +${((Date.now() - cutAt) / 1000).toFixed(1)} s`))
      await sleep(1000)
    }
    await this.lab.restore(host)
    const restoredAt = Date.now()
    const back = await waitFor(`the connections to ${host} to come back both ways`, async () => {
      const all = await this.snapshot(`${host} restored +${((Date.now() - restoredAt) / 1000).toFixed(1)} s`)
      return this.allConnected(all) ? all : undefined
    }, BACK_WITHIN_MS + 10_000, 250)
    return { backMs: Date.now() - restoredAt, during, back }
  }

  /** Waits (looking every 2 s) for the three to train in one ring again; the ms it took, or null. */
  async ringOfThree (timeoutMs: number): Promise<number | null> {
    const t0 = Date.now()
    while (Date.now() - t0 < timeoutMs) {
      const all = await this.snapshot(`ring +${((Date.now() - t0) / 1000).toFixed(1)} s`)
      if (all.length === 3 && all.every(s => (s.ring?.members.length ?? 0) === 3 && s.ring?.round === all[0].ring?.round && s.ring?.state !== 'waiting')) return Date.now() - t0
      await sleep(1000)
    }
    return null
  }

  /** Waits for the job to end on every peer: each one's exit code and printed result. */
  async results (timeoutMs = 240_000): Promise<Array<{ step: number, accuracy: number, hash: string }>> {
    const results = await Promise.all(this.swarm.peers.map(async p => await p.proc.exited(timeoutMs)))
    return results.map((r, i) => {
      assert.equal(r.code, 0, `${NAMES[i]} exit code (stderr: ${r.stderr.slice(-2000)})`)
      const m = /done: \d+ epochs, step (\d+), test accuracy ([0-9.]+), weights ([0-9a-f]+)/.exec(r.stdout)
      assert.ok(m !== null, `${NAMES[i]} printed its result:\n${r.stdout.slice(-1000)}`)
      return { step: Number(m[1]), accuracy: Number(m[2]), hash: m[3] }
    })
  }

  describe (done: Array<{ step: number, accuracy: number, hash: string }>): string {
    return done.map((d, i) => `${NAMES[i]} step ${d.step} accuracy ${d.accuracy} weights ${d.hash}`).join('; ')
  }

  async stop (): Promise<void> {
    await this.swarm.stopAll()
    await this.lab.destroy()
  }
}

test('a member whose link is cut past the member timeout is back within 15 s of the restore, and the job ends with one model', { timeout: 400_000 }, async t => {
  if (!await skipUnlessLab(t)) return
  const s = await LabSwarm.start()
  try {
    const cut = await s.cutAndRestore('c', false)
    const kept = cut.during.every(all => s.allConnected(all, false))
    t.diagnostic(`c back ${cut.backMs} ms after the restore; TCP connections ${kept ? 'outlived the cut' : 'were closed during the cut'}`)
    assert.ok(cut.backMs <= BACK_WITHIN_MS, `back after ${cut.backMs} ms`)
    const ring = await s.ringOfThree(60_000)
    t.diagnostic(`one ring of three again ${ring ?? 'never (60 s)'} ms after the connections`)
    const done = await s.results()
    t.diagnostic(`done: ${s.describe(done)}`)
    assert.equal(new Set(done.map(d => d.hash)).size, 1, `weights: ${done.map(d => d.hash).join(' ')}`)
  } finally {
    t.diagnostic(s.log.join('\n'))
    await s.stop()
  }
})

test('a member cut off whose connections are dropped at once is redialled, and back within 15 s of the restore', { timeout: 400_000 }, async t => {
  if (!await skipUnlessLab(t)) return
  const s = await LabSwarm.start()
  try {
    const cut = await s.cutAndRestore('b', true)
    const redials = cut.back.map(x => x.network?.reconnect)
    t.diagnostic(`b back ${cut.backMs} ms after the restore; redials (attempts/reconnects): ${redials.map((r, i) => `${NAMES[i]} ${r?.attempts ?? '-'}/${r?.reconnects ?? '-'}`).join(', ')}`)
    assert.ok(cut.backMs <= BACK_WITHIN_MS, `back after ${cut.backMs} ms`)
    assert.ok((redials[1]?.attempts ?? 0) >= 2, 'b kept trying while it was cut off')
    assert.ok(redials.reduce((n, r) => n + (r?.reconnects ?? 0), 0) >= 1, 'the connections came back by redialling')
    assert.ok(s.swarm.peers.every(p => p.proc.child.exitCode === null), 'no peer ended during the cut')
    // issue 12: a and c saw their old connections to b close only after b had redialled them, and gossipsub kept
    // its stream to b on the closed one: b heard none of their round announcements and held without a quorum
    // until they finished and left (node/network reopenGossipStream)
    await t.test('and the job ends with one model', async () => {
      const ring = await s.ringOfThree(20_000)
      t.diagnostic(`one ring of three again ${ring ?? 'never (20 s)'} ms after the connections`)
      // a deadline, not a timing: the rest of the job took 11-50 s in runs here, past 60 s on a loaded machine
      const done = await s.results(120_000)
      t.diagnostic(`done: ${s.describe(done)}`)
      assert.equal(new Set(done.map(d => d.hash)).size, 1, `weights: ${done.map(d => d.hash).join(' ')}`)
    })
  } finally {
    t.diagnostic(s.log.join('\n'))
    await s.stop()
  }
})
