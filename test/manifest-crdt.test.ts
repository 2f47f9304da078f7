import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { LwwMap, lww } from '../node/manifest/crdt.ts'
import type { Entry } from '../node/manifest/crdt.ts'
import { HlcClock, compareHlc } from '../node/manifest/hlc.ts'
import { planClaims, targetShare, unownedShards } from '../node/manifest/claims.ts'

const entryArb: fc.Arbitrary<Entry> = fc.record({
  key: fc.constantFrom('job', 'claims/s1', 'claims/s2', 'members/a', 'members/b'),
  value: fc.oneof(fc.constant(null), fc.integer(), fc.constantFrom('a', 'b', 'c')),
  clock: fc.record({
    wall: fc.integer({ min: 0, max: 5 }),
    counter: fc.integer({ min: 0, max: 3 }),
    peer: fc.constantFrom('p1', 'p2', 'p3')
  })
})

/** Writes with identical clocks come from one writer's single write, so they carry one value. */
function consistent (entries: Entry[]): Entry[] {
  const seen = new Map<string, Entry>()
  return entries.map(e => {
    const id = `${e.key}@${e.clock.wall}.${e.clock.counter}.${e.clock.peer}`
    const first = seen.get(id)
    if (first !== undefined) return first
    seen.set(id, e)
    return e
  })
}

const state = (entries: Entry[]): string => {
  const m = new LwwMap()
  m.merge(entries)
  return JSON.stringify(m.entries().map(e => JSON.stringify([e.key, e.value, e.clock.wall, e.clock.counter, e.clock.peer])).sort())
}

test('merge is commutative: any delivery order gives the same state', () => {
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 30 }).map(consistent), fc.integer(), (entries, seed) => {
    const shuffled = [...entries]
    let s = seed
    for (let i = shuffled.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) & 0x7fffffff
      const j = s % (i + 1)
      ;[shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]
    }
    assert.equal(state(shuffled), state(entries))
  }))
})

test('merge is associative: merging replicas in any grouping converges', () => {
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 30 }).map(consistent), fc.nat(30), fc.nat(30), (entries, i, j) => {
    const [x, y] = [Math.min(i, j, entries.length), Math.min(Math.max(i, j), entries.length)]
    const a = entries.slice(0, x); const b = entries.slice(x, y); const c = entries.slice(y)
    const ab = new LwwMap(); ab.merge(a); ab.merge(b)
    const left = new LwwMap(); left.merge(ab.entries()); left.merge(c)
    const bc = new LwwMap(); bc.merge(b); bc.merge(c)
    const right = new LwwMap(); right.merge(a); right.merge(bc.entries())
    assert.equal(left.digest(), right.digest())
    assert.equal(state(left.entries()), state(right.entries()))
  }))
})

test('merge is idempotent: merging the same writes again changes nothing', () => {
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 30 }).map(consistent), entries => {
    const m = new LwwMap()
    m.merge(entries)
    const before = state(m.entries())
    assert.deepEqual(m.merge(entries), [])
    assert.deepEqual(m.merge(m.entries()), [])
    assert.equal(state(m.entries()), before)
  }))
})

test('the later clock wins; equal wall times are ordered by counter, then peer id', () => {
  const e = (wall: number, counter: number, peer: string, value: unknown): Entry => ({ key: 'k', value, clock: { wall, counter, peer } })
  assert.equal(lww(e(1, 0, 'b', 'old'), e(2, 0, 'a', 'new')).value, 'new')
  assert.equal(lww(e(2, 1, 'a', 'x'), e(2, 0, 'z', 'y')).value, 'x')
  assert.equal(lww(e(2, 1, 'a', 'x'), e(2, 1, 'b', 'y')).value, 'y')
  const m = new LwwMap()
  m.merge([e(5, 0, 'a', 'v')])
  m.merge([e(6, 0, 'a', null)])
  assert.equal(m.get('k'), undefined, 'a later delete wins')
  m.merge([e(4, 0, 'b', 'stale')])
  assert.equal(m.get('k'), undefined, 'an older write does not resurrect a deleted key')
})

test('the clock is monotonic and moves past what it observes', () => {
  let now = 1000
  const clock = new HlcClock('me', () => now)
  const a = clock.tick()
  const b = clock.tick()
  assert.ok(compareHlc(b, a) > 0)
  clock.observe({ wall: 5000, counter: 7, peer: 'other' })
  const c = clock.tick()
  assert.ok(compareHlc(c, { wall: 5000, counter: 7, peer: 'other' }) > 0, 'after observing, local writes win over what was seen')
  now = 900 // the wall clock going backwards does not break monotonicity
  assert.ok(compareHlc(clock.tick(), c) > 0)
  clock.observe({ wall: now + 10 * 60_000, counter: 0, peer: 'liar' })
  assert.ok(clock.tick().wall < now + 60_000, 'a clock far in the future is not followed')
})

test('fair shares add up to the shard count and differ by at most one', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 1024 }), fc.uniqueArray(fc.integer({ min: 0, max: 1_000_000 }).map(n => `peer${n}`), { minLength: 1, maxLength: 12 }), (shards, live) => {
    const shares = live.map(p => targetShare(shards, live, p))
    assert.equal(shares.reduce((a, b) => a + b, 0), shards)
    assert.ok(Math.max(...shares) - Math.min(...shares) <= 1)
  }))
  assert.equal(targetShare(10, ['a', 'b'], 'c'), 0, 'a peer that is not live gets nothing')
})

/** Runs every peer's plan against one shared view, applying claims in a random order (as racing writes would). */
function simulate (shardCount: number, peers: string[], initial: Map<string, string | null>, seed: number): Map<string, string | null> {
  const shards = Array.from({ length: shardCount }, (_, i) => `s${String(i).padStart(4, '0')}`)
  const owners = new Map(initial)
  let s = seed
  for (let round = 0; round < 20; round++) {
    const plans = peers.map(me => ({ me, plan: planClaims({ me, shards, owners, live: peers }) }))
    if (plans.every(p => p.plan.claim.length === 0 && p.plan.release.length === 0)) return owners
    // all peers decide on the same (stale) view, then their writes land in some order: the last writer wins
    const writes: Array<[string, string | null]> = []
    for (const { me, plan } of plans) {
      for (const r of plan.release) writes.push([r, null])
      for (const c of plan.claim) writes.push([c, me])
    }
    for (let i = writes.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) & 0x7fffffff
      const j = s % (i + 1)
      ;[writes[i], writes[j]] = [writes[j], writes[i]]
    }
    for (const [shard, owner] of writes) owners.set(shard, owner)
  }
  return owners
}

test('claims converge to a complete, disjoint, fair assignment, also after a peer dies or joins', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 8 }), fc.integer(), (shardCount, n, seed) => {
    const peers = Array.from({ length: n }, (_, i) => `peer${i}`)
    const shards = Array.from({ length: shardCount }, (_, i) => `s${String(i).padStart(4, '0')}`)
    const check = (owners: Map<string, string | null>, live: string[]): void => {
      assert.deepEqual(unownedShards(shards, owners, live), [])
      for (const p of live) assert.equal([...owners.values()].filter(o => o === p).length, targetShare(shardCount, live, p))
    }
    let owners = simulate(shardCount, peers, new Map(), seed)
    check(owners, peers)
    if (n > 1) {
      const survivors = peers.slice(1) // peer0 died: its claims stay in the manifest, but it is not live
      owners = simulate(shardCount, survivors, owners, seed + 1)
      check(owners, survivors)
    }
    const grown = [...peers.slice(1), 'newcomer']
    owners = simulate(shardCount, grown, owners, seed + 2)
    check(owners, grown)
  }), { numRuns: 200 })
})
