/**
 * The swarm's data position (node/data/epoch.ts), as pure logic: members draw batches, their slots are summed
 * as the ring sums them, and every member applies the sum. Every row is trained exactly once per epoch by the
 * group as a whole while shards change owner, two members claim one shard at once, rounds fail, a member dies
 * and another joins from the swarm's state; members of one round end it with the same position; a lone reader
 * visits every row once an epoch in a seeded order, and one restored mid-epoch draws what it would have.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DataEpoch } from '../node/data/epoch.ts'
import { seededRandom } from '../node/data/random.ts'

const SHARDS = [130, 95, 160, 0, 111, 140]
const ROWS = SHARDS.reduce((a, b) => a + b, 0)

function epochOf (shared = true, seed = 9): DataEpoch {
  return new DataEpoch({ shardRows: SHARDS, blockRows: 32, seed, windowBlocks: 3, shared })
}

test('a lone reader visits every row once an epoch, shuffled, the same for the same seed; a restored one draws what it would have', () => {
  const drawEpoch = (e: DataEpoch): number[] => {
    const start = e.epoch
    const out: number[] = []
    while (e.epoch === start) {
      const rows = e.next([0, 1, 2, 3, 4, 5], 17)
      assert.ok(rows.length > 0 && rows.length <= 17)
      out.push(...rows)
      const own = new Float32Array(e.slots)
      e.encode(own, [0, 1, 2, 3, 4, 5])
      e.apply(own)
    }
    return out
  }
  const a = epochOf(false)
  const first = drawEpoch(a)
  assert.equal(first.length, ROWS)
  assert.deepEqual([...first].sort((x, y) => x - y), Array.from({ length: ROWS }, (_, i) => i), 'every row once')
  assert.notDeepEqual(first.slice(0, 50), [...first.slice(0, 50)].sort((x, y) => x - y), 'shuffled')
  assert.ok(new Set(first.slice(0, 40).map(r => r < 130 ? 0 : r < 225 ? 1 : r < 385 ? 2 : r < 496 ? 4 : 5)).size > 1, 'a window mixes shards')
  const second = drawEpoch(a)
  assert.equal(a.epoch, 2)
  assert.deepEqual([...second].sort((x, y) => x - y), [...first].sort((x, y) => x - y))
  assert.notDeepEqual(second, first, 'another epoch, another order')
  assert.deepEqual(drawEpoch(epochOf(false)), first, 'deterministic')

  // mid-epoch: a reader restored from the position goes on as the one that was not stopped
  const b = epochOf(false)
  for (let i = 0; i < 11; i++) {
    b.next([0, 1, 2, 4, 5], 17)
    const own = new Float32Array(b.slots)
    b.encode(own, [0, 1, 2, 4, 5])
    b.apply(own)
  }
  const c = epochOf(false)
  c.restore(b.state())
  for (let i = 0; i < 8; i++) assert.deepEqual(c.next([0, 1, 2, 4, 5], 17), b.next([0, 1, 2, 4, 5], 17), `batch ${11 + i}`)
})

/**
 * Rounds of a simulated group. Each round every live member draws from the shards its own view of the claims
 * gives it and encodes its slots; unless the round fails, the sum is applied by every member; a failed round is
 * discarded by all. Returns, per epoch, every row trained in an applied round.
 */
test('every row once per epoch swarm-wide while shards change owner, claims collide, rounds fail, a member dies and one joins', () => {
  const rand = seededRandom(77)
  const members = new Map<string, DataEpoch>([['a', epochOf()], ['b', epochOf()], ['c', epochOf()]])
  /** Each member's view of which shards it owns: views overlap while claims settle. */
  const views = new Map<string, number[]>([['a', [0, 1]], ['b', [2, 3]], ['c', [4, 5]]])
  const trained = new Map<number, number[]>()
  let rounds = 0
  let idle = 0
  const round = (fail: boolean): void => {
    rounds++
    const drawn = new Map<string, { epoch: number, rows: Uint32Array }>()
    const sum = new Float32Array(epochOf().slots)
    for (const [id, e] of members) {
      const rows = e.next(views.get(id) ?? [], 8)
      drawn.set(id, { epoch: e.epoch, rows })
      const slots = new Float32Array(e.slots)
      e.encode(slots, views.get(id) ?? [])
      for (let i = 0; i < sum.length; i++) sum[i] += slots[i]
    }
    if (fail) {
      for (const e of members.values()) e.discard()
      return
    }
    for (const { epoch, rows } of drawn.values()) {
      const list = trained.get(epoch) ?? []
      list.push(...rows)
      trained.set(epoch, list)
      if (rows.length === 0) idle++
    }
    for (const e of members.values()) e.apply(sum)
    const states = [...members.values()].map(e => e.state().join())
    assert.equal(new Set(states).size, 1, `round ${rounds}: every member holds the same position`)
  }
  const run = (n: number): void => { for (let i = 0; i < n; i++) round(rand() < 0.1) }

  run(25)
  // b takes shard 1 from a; for a while both think they own it
  views.set('b', [1, 2, 3])
  run(6)
  views.set('a', [0])
  run(20)
  // c dies in a round that fails; its shards go to a and b
  const c = members.get('c') as DataEpoch
  members.delete('c')
  views.delete('c')
  round(true)
  views.set('a', [0, 4])
  views.set('b', [1, 2, 3, 5])
  run(30)
  // d joins from a's state and takes shard 5 from b (b lets it go at once)
  const d = epochOf()
  d.restore((members.get('a') as DataEpoch).state())
  members.set('d', d)
  views.set('d', [5])
  views.set('b', [1, 2, 3])
  run(120)
  const a = members.get('a') as DataEpoch
  assert.ok(a.epoch >= 2, `${a.epoch} epochs in ${rounds} rounds`)
  for (let epoch = 0; epoch < a.epoch; epoch++) {
    const rows = trained.get(epoch) ?? []
    assert.equal(rows.length, ROWS, `epoch ${epoch}: ${rows.length} rows trained`)
    assert.deepEqual([...rows].sort((x, y) => x - y), Array.from({ length: ROWS }, (_, i) => i), `epoch ${epoch}: every row once`)
  }
  for (const e of [...members.values(), c]) assert.equal(e.overTaken, 0)
  assert.ok(idle < rounds, 'members mostly trained')
})

test('members draw in proportion to the rows their shards have left, so that they end the epoch together', () => {
  const a = epochOf()
  const b = epochOf()
  const views = { a: [0, 1, 2, 3], b: [4, 5] } // 385 rows against 251
  const sizes = { a: [] as number[], b: [] as number[] }
  let rounds = 0
  while (a.epoch === 0) {
    rounds++
    const ra = a.next(views.a, 16)
    const rb = b.next(views.b, 16)
    sizes.a.push(ra.length)
    sizes.b.push(rb.length)
    const sum = new Float32Array(a.slots)
    const sa = new Float32Array(a.slots)
    const sb = new Float32Array(a.slots)
    a.encode(sa, views.a)
    b.encode(sb, views.b)
    for (let i = 0; i < sum.length; i++) sum[i] = sa[i] + sb[i]
    a.apply(sum)
    b.apply(sum)
  }
  // the first round only claims; then a draws about 385/636 of the group's 32 rows a round
  assert.equal(sizes.a[0] + sizes.b[0], 0)
  assert.ok(Math.abs(sizes.a[2] - 32 * 385 / 636) <= 1, `a drew ${sizes.a[2]}`)
  assert.ok(Math.abs(sizes.b[2] - 32 * 251 / 636) <= 1, `b drew ${sizes.b[2]}`)
  // neither sat idle for more than the last round or two while the other finished
  const idleA = sizes.a.slice(1).filter(n => n === 0).length
  const idleB = sizes.b.slice(1).filter(n => n === 0).length
  assert.ok(idleA <= 2 && idleB <= 2, `idle rounds: a ${idleA}, b ${idleB} of ${rounds}`)
})
