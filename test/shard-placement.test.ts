/**
 * Where shards live (node/shard-transfer/placement.ts): keepers, fetch order,
 * the drop rule's safety when every peer drops at once, convergence to R
 * copies per shard and about R/N of the shards per peer; and the manifest's
 * holder records on the wire (bounded, written only by the holder itself).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { keepersOf, planPlacement } from '../node/shard-transfer/placement.ts'
import type { PlacementView } from '../node/shard-transfer/placement.ts'
import { planClaims } from '../node/manifest/claims.ts'
import { MAX_HELD_SHARDS, decodeDelta, encodeDelta } from '../protocols/manifest/index.ts'

const peerIds = ['pA', 'pB', 'pC', 'pD', 'pE', 'pF']
const shardIds = (n: number): string[] => Array.from({ length: n }, (_, i) => `s${String(i).padStart(4, '0')}`)

test('keepers: the live owner first, then R − 1 other live members; all live when fewer than R', () => {
  fc.assert(fc.property(fc.subarray(peerIds, { minLength: 1 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 40 }), fc.option(fc.constantFrom(...peerIds)), (live, r, i, owner) => {
    const shard = `s${String(i).padStart(4, '0')}`
    const k = keepersOf(shard, owner, live, r)
    assert.equal(k.length, Math.min(r, live.length))
    assert.equal(new Set(k).size, k.length)
    assert.ok(k.every(p => live.includes(p)))
    if (owner !== null && live.includes(owner)) assert.equal(k[0], owner)
  }))
})

/** A swarm's state: who owns what and what each peer has on disk. */
function viewFor (me: string, live: string[], owners: Map<string, string | null>, disk: Map<string, Set<string>>, shards: string[], replicas: number): PlacementView {
  return { me, live, owners, shards, replicas, holders: disk, local: disk.get(me) ?? new Set() }
}

test('the drop rule: however many peers drop at once (same view), every shard keeps at least R copies it had', () => {
  fc.assert(fc.property(
    fc.subarray(peerIds, { minLength: 1 }),
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 12 }),
    fc.infiniteStream(fc.boolean()),
    fc.infiniteStream(fc.option(fc.constantFrom(...peerIds))),
    (live, r, count, coin, ownerPick) => {
      const shards = shardIds(count)
      const owners = new Map(shards.map(s => [s, ownerPick.next().value]))
      const disk = new Map(live.map(p => [p, new Set(shards.filter(() => coin.next().value))]))
      const before = new Map(shards.map(s => [s, live.filter(p => disk.get(p)?.has(s) === true).length]))
      const drops = new Map(live.map(p => [p, planPlacement(viewFor(p, live, owners, disk, shards, r)).drop]))
      for (const [p, ds] of drops) for (const s of ds) disk.get(p)?.delete(s)
      for (const s of shards) {
        const after = live.filter(p => disk.get(p)?.has(s) === true).length
        assert.ok(after >= Math.min(r, before.get(s) ?? 0), `${s}: ${before.get(s)} copies before, ${after} after (R=${r})`)
      }
    }
  ))
})

test('owned shards are fetched first, then the rarest replicas', () => {
  const shards = shardIds(6)
  const live = ['pA', 'pB', 'pC']
  const owners = new Map(shards.map((s, i) => [s, live[i % 3]]))
  const disk = new Map([['pA', new Set<string>()], ['pB', new Set(shards)], ['pC', new Set(shards.slice(0, 3))]])
  const plan = planPlacement(viewFor('pA', live, owners, disk, shards, 3))
  const mine = shards.filter((_, i) => i % 3 === 0)
  assert.deepEqual(plan.fetch.slice(0, mine.length), mine)
  assert.deepEqual(new Set(plan.fetch), new Set(shards))
  // after the owned ones, those with one copy (only pB) before those with two
  const rest = plan.fetch.slice(mine.length)
  const copies = rest.map(s => plan.copies.get(s) ?? 0)
  assert.deepEqual(copies, [...copies].sort((a, b) => a - b))
})

/** Claims and placement run by every peer until nothing changes; returns each peer's disk. */
function settle (live: string[], shards: string[], r: number, disk: Map<string, Set<string>>, owners = new Map<string, string | null>()): Map<string, Set<string>> {
  for (let round = 0; round < 50; round++) {
    let changed = false
    for (const me of live) {
      const plan = planClaims({ me, shards, owners, live, held: disk.get(me) })
      for (const s of plan.release) { owners.set(s, null); changed = true }
      for (const s of plan.claim) { owners.set(s, me); changed = true }
    }
    for (const me of live) {
      const p = planPlacement(viewFor(me, live, owners, disk, shards, r))
      const mine = disk.get(me) ?? new Set<string>()
      disk.set(me, mine)
      for (const s of p.fetch) { mine.add(s); changed = true }
      for (const s of p.drop) { mine.delete(s); changed = true }
    }
    if (!changed) return disk
  }
  throw new Error('placement did not settle in 50 rounds')
}

test('a data set imported on one peer settles at R copies per shard, about R/N of it per peer; a kill re-replicates', () => {
  const shards = shardIds(12)
  const live = ['pA', 'pB', 'pC']
  const disk = settle(live, shards, 2, new Map([['pA', new Set(shards)]]))
  for (const s of shards) assert.equal(live.filter(p => disk.get(p)?.has(s) === true).length, 2, s)
  for (const p of live) assert.ok((disk.get(p)?.size ?? 0) >= 6 && (disk.get(p)?.size ?? 0) <= 10, `${p} holds ${disk.get(p)?.size}`)
  // pA (the importer) goes: the other two end up with every shard
  const after = settle(['pB', 'pC'], shards, 2, new Map([['pB', disk.get('pB') ?? new Set()], ['pC', disk.get('pC') ?? new Set()]]))
  for (const p of ['pB', 'pC']) assert.equal(after.get(p)?.size, shards.length, p)
})

test('holder records on the wire: bounded, and only the holder writes its own', () => {
  const clock = { wall: 1, counter: 0, peer: 'pA' }
  const ok = { key: 'holders/pA', value: { dataset: 'ds-0123456789abcdef', shards: ['s0000', 's0001'] }, clock }
  assert.deepEqual(decodeDelta(encodeDelta({ entries: [ok] })).entries[0].value, ok.value)
  const forged = { ...ok, key: 'holders/pB' }
  assert.throws(() => decodeDelta(new TextEncoder().encode(JSON.stringify({ v: 1, entries: [forged] }))), { name: 'InvalidMessageError' })
  const tooMany = { ...ok, value: { dataset: 'ds-0123456789abcdef', shards: Array.from({ length: MAX_HELD_SHARDS + 1 }, (_, i) => `s${i}`) } }
  assert.throws(() => decodeDelta(new TextEncoder().encode(JSON.stringify({ v: 1, entries: [tooMany] }))), { name: 'InvalidMessageError' })
  const badId = { ...ok, value: { dataset: 'mnist', shards: [] } }
  assert.throws(() => decodeDelta(new TextEncoder().encode(JSON.stringify({ v: 1, entries: [badId] }))), { name: 'InvalidMessageError' })
})
