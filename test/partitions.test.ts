/**
 * A frozen member never splits the swarm: after a crash and a join, one member of three is frozen with
 * SIGSTOP for 5 s, 15 s and 30 s (each time at a random point of a round) and woken. Each time it is back in
 * the ring within 15 s of waking; the two others (the majority) never take its state, so their step never
 * jumps; and all three hold one weights hash round for round at the end.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm, statusOf as statusIn } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

const TIMING = ['--heartbeat-ms', '500', '--member-timeout', '2500', '--round-timeout', '3000', '--step-timeout', '2000']
/** Long enough to outlast the test; the peers are killed at the end. */
const JOB = ['--epochs', '500', '--hidden', '64', '--checkpoint-every', '50']
const NAMES = ['p1', 'p2', 'p3']

let swarm: LocalSwarm
before(async () => { swarm = await LocalSwarm.create() })
after(async () => { await swarm.stopAll() })

/**
 * Status over each peer's control API, in-process and with a short timeout: a `peer status` process per poll
 * is slow on a loaded machine, and one slow answer must not use up a rejoin deadline.
 */
async function statusOf (name: string): Promise<StatusJson | undefined> {
  return await statusIn(swarm.dataDir(name), undefined, 2000)
}

async function all (names = NAMES): Promise<StatusJson[] | undefined> {
  const ss = await Promise.all(names.map(statusOf))
  return ss.every(s => s !== undefined) ? ss as StatusJson[] : undefined
}

/** Every named peer in one ring of `n` members, training. */
async function inOneRing (names: string[], what: string, timeoutMs: number): Promise<StatusJson[]> {
  let last: StatusJson[] | undefined
  return await waitFor(what, async () => {
    const ss = await all(names)
    if (ss === undefined) return undefined
    last = ss
    const ids = ss.map(s => s.peerId).sort()
    const ok = ss.every(s => (s.state === 'training' || s.state === 'reducing') && [...(s.ring?.members ?? [])].sort().join() === ids.join() && s.partition == null)
    return ok ? ss : undefined
  }, timeoutMs, 200).catch((err: Error) => {
    const seen = (last ?? []).map(s => `${s.state} r${s.ring?.round} ${s.ring?.state} [${s.ring?.members.length}] group ${s.ring?.group?.epoch} partition ${s.partition != null} syncs ${s.syncs.length} last ${JSON.stringify(s.ring?.events.slice(-3).map(e => e.detail))}`)
    throw new Error(`${err.message}; last seen: ${seen.join(' | ')}`)
  })
}

test('a swarm of 3 that has seen a crash and a join', async () => {
  await swarm.start('p1', [...JOB, ...TIMING, '--min-peers', '3'])
  await swarm.start('p2', [...TIMING, '--min-peers', '3'], 'p1')
  await swarm.start('p3', [...TIMING, '--min-peers', '3'], 'p1')
  await inOneRing(NAMES, 'the first ring of three', 60_000)
  swarm.proc('p2').child.kill('SIGKILL')
  await swarm.proc('p2').exited()
  await inOneRing(['p1', 'p3'], 'p1 and p3 to go on without p2', 30_000)
  await swarm.start('p2', TIMING, 'p1')
  await inOneRing(NAMES, 'p2 back after its restart', 60_000)
})

for (const seconds of [5, 15, 30]) {
  test(`a member frozen for ${seconds} s rejoins within 15 s of waking; the majority never takes its state`, async () => {
    const victim = swarm.proc('p3').child
    const before = await waitFor('all three to answer', async () => await all(), 20_000)
    const frozenId = before[2].peerId
    const steps: number[][] = [[], []]
    // a random point of a round: rounds take tens of milliseconds
    await sleep(Math.floor(Math.random() * 200))
    victim.kill('SIGSTOP')
    const frozenAt = Date.now()
    try {
      // the fault's length is the point of the test, not a wait for a condition
      await sleep(seconds * 1000)
    } finally {
      victim.kill('SIGCONT')
    }
    const watch = setInterval(() => {
      void Promise.all(['p1', 'p2'].map(async (n, i) => { const s = await statusOf(n); if (s?.training != null) steps[i].push(s.training.step) }))
    }, 500)
    const woke = Date.now()
    const a = await waitFor('p1 to answer', async () => await statusOf('p1'), 10_000)
    assert.ok(a !== undefined && a.training!.step > before[0].training!.step, 'the majority trained on while p3 was frozen')
    let back: StatusJson[]
    try {
      back = await inOneRing(NAMES, `p3 back in the ring after ${seconds} s frozen`, 15_000)
    } finally {
      clearInterval(watch)
    }
    const took = Date.now() - woke
    assert.ok(took <= 15_000, `back after ${took} ms`)
    // the majority never takes the frozen member's state: nothing it adopted came from p3 before p3 had taken the
    // swarm's state (after that, p3's state is the majority's own: a majority member left out of a later round may
    // fetch it from p3 as from anyone), and its step only grows
    const frozenTookSwarm = Math.min(...back[2].syncs.filter(x => (x.at ?? 0) >= frozenAt && x.adopted !== false).map(x => x.at ?? 0))
    for (const s of back.slice(0, 2)) {
      const fromFrozen = s.syncs.filter(x => (x.at ?? 0) >= frozenAt && (x.at ?? 0) < frozenTookSwarm && x.adopted !== false && (x.from ?? []).includes(frozenId))
      assert.deepEqual(fromFrozen, [], `${s.peerId} adopted state from the frozen member`)
    }
    for (const list of steps) for (let i = 1; i < list.length; i++) assert.ok(list[i] >= list[i - 1], `a majority member's step went from ${list[i - 1]} to ${list[i]}`)
    const newSyncs = back[2].syncs.filter(x => (x.at ?? 0) >= frozenAt)
    assert.ok(newSyncs.some(x => x.adopted !== false), 'p3 took the swarm\'s state')
    assert.ok(back[2].training!.step >= back[0].training!.step - 20, 'p3 is at the swarm\'s step')
  })
}

test('all three hold one weights hash, round for round', async () => {
  const common = await waitFor('a recent round whose hash all three report', async () => {
    const ss = await all()
    if (ss === undefined) return undefined
    const maps = ss.map(s => new Map((s.training?.hashes ?? []).map(h => [h.round, h.hash])))
    const rounds = [...maps[0].keys()].filter(r => maps.every(m => m.has(r)))
    return rounds.length >= 2 ? { ss, maps, rounds } : undefined
  }, 60_000, 300)
  for (const r of common.rounds) {
    const hashes = new Set(common.maps.map(m => m.get(r)))
    assert.equal(hashes.size, 1, `round ${r}: ${[...hashes].join(' ')}`)
  }
})
