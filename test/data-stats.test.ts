/**
 * Normalisation statistics as a map over shards and a sum over peers: three
 * peers' ring vectors, summed in float32 as the ring all-reduce does, give
 * exactly (bit for bit) the statistics the single-process import stored, and
 * agree with one pass over all rows (counts, min, max, document frequencies
 * exactly; float sums to rounding).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import {
  StatsLayout, combineAll, finalizeStats, fromRingSum, importDataset, partialStats, partialStatsOfTable, readDescription,
  readShard, shardPath, statsFromDescription, statsLayoutOf, toRingVector
} from '../node/data/imported/index.ts'
import type { CleanRow } from '../node/data/imported/index.ts'
import { seededRandom } from '../node/data/random.ts'

const WORDS = ['cheap', 'meeting', 'viagra', 'lunch', 'free', 'report', 'winner', 'project', 'offer', 'notes', 'café', 'über']

/** A CSV whose numeric columns sit far from zero (a naive Σx² − (Σx)²/n would cancel badly). */
function generate (rows: number, seed: number): string {
  const rand = seededRandom(seed)
  const lines = ['ts,price,colour,body,label']
  for (let i = 0; i < rows; i++) {
    const words = Array.from({ length: 3 + Math.floor(rand() * 8) }, () => WORDS[Math.floor(rand() * WORDS.length)])
    lines.push([
      (1.7e9 + Math.floor(rand() * 1e6)).toString(),
      (rand() * 100 - 30).toFixed(3),
      ['red', 'green', 'blue'][Math.floor(rand() * 3)],
      `"${words.join(' ')}"`,
      rand() < 0.4 ? 'spam' : 'ham'
    ].join(','))
  }
  return `${lines.join('\n')}\n`
}

/** Σ over peers as the ring does it: float32 adds, in the order given. */
function ringSum (vectors: Float32Array[], order: number[]): Float32Array {
  const sum = new Float32Array(vectors[0].length)
  for (const p of order) for (let i = 0; i < sum.length; i++) sum[i] = Math.fround(sum[i] + vectors[p][i])
  return sum
}

test('3 peers × their shards, summed as the ring does, equal the single-process statistics exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peer-data-stats-'))
  try {
    const file = join(dir, 'data.csv')
    writeFileSync(file, generate(3000, 7))
    const r = await importDataset(file, { label: 'label', text: ['body'], shards: 6, buckets: 1024, outDir: join(dir, 'datasets') })
    const d = readDescription(r.dir)
    const layout = statsLayoutOf(d)
    const schema = { columns: d.columns, buckets: d.transform.buckets }
    const tables = d.shards.map(s => readShard(shardPath(r.dir, s)))
    const perShard = tables.map(t => partialStatsOfTable(layout, schema, t))

    // map over shards, fold in shard order: what the import stored
    const stored = statsFromDescription(layout, d.stats)
    assert.deepEqual(combineAll(layout, perShard), stored)

    // three peers own shards {0, 3}, {1, 4}, {2, 5}; the ring sums their vectors in float32, in any order
    const owners = [[0, 3], [1, 4], [2, 5]]
    const vectors = owners.map(own => toRingVector(layout, d.shards.length, new Map(own.map(i => [i, perShard[i]]))))
    for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0]]) {
      const swarm = fromRingSum(layout, d.shards.length, ringSum(vectors, order))
      assert.deepEqual(swarm, stored, `order ${order.join(',')}`)
    }

    // one pass over every training row in one process: counts, min, max, df exact; sums to rounding
    const rows: CleanRow[] = []
    for (const t of tables) {
      const cols = d.columns.map(c => c.type === 'ignored' ? null : t.getChild(c.name))
      for (let i = 0; i < t.numRows; i++) {
        rows.push(d.columns.map((c, k) => {
          const v = cols[k]?.get(i)
          if (c.type === 'categorical' || c.type === 'label') return (c.categories as string[]).indexOf(v as string)
          return (v ?? null) as number | string | null
        }))
      }
    }
    const single = partialStats(layout, rows)
    for (let i = 0; i < layout.size; i++) {
      const isSum = layout.numeric.some(s => i === s.at + 1 || i === s.at + 2)
      if (isSum) assert.ok(Math.abs(single[i] - stored[i]) <= 1e-9 * Math.max(1, Math.abs(stored[i])), `sum at ${i}: ${single[i]} vs ${stored[i]}`)
      else assert.equal(single[i], stored[i], `element ${i}`)
    }
    const fin = finalizeStats(layout, stored)
    const ts = rows.map(row => row[0] as number)
    const mean = ts.reduce((a, b) => a + b, 0) / ts.length
    const std = Math.sqrt(ts.reduce((a, b) => a + (b - mean) ** 2, 0) / ts.length)
    assert.ok(Math.abs((fin.numeric.ts.mean as number) - mean) < 1e-6)
    assert.ok(Math.abs((fin.numeric.ts.std as number) - std) / std < 1e-9, `std ${fin.numeric.ts.std} vs two-pass ${std}`)
    assert.equal(fin.rows, r.trainRows)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a shard missing from the sum, or counted by two peers, is refused', () => {
  const layout = new StatsLayout({ columns: [{ name: 'x', type: 'numeric', shift: 0 }], buckets: 256 })
  const p = (xs: number[]): Float64Array => partialStats(layout, xs.map(x => [x]))
  const shards = [p([1, 2]), p([3]), p([4, 5, 6])]
  const a = toRingVector(layout, 3, new Map([[0, shards[0]], [1, shards[1]]]))
  const b = toRingVector(layout, 3, new Map([[1, shards[1]]]))
  assert.throws(() => fromRingSum(layout, 3, ringSum([a], [0])), { name: 'StatsCoverageError', message: /missing 2/ })
  assert.throws(() => fromRingSum(layout, 3, ringSum([a, b], [0, 1])), { name: 'StatsCoverageError', message: /more than once 1/ })
  const c = toRingVector(layout, 3, new Map([[2, shards[2]]]))
  const ok = fromRingSum(layout, 3, ringSum([a, c], [1, 0]))
  assert.deepEqual(ok, combineAll(layout, shards))
  const f = finalizeStats(layout, ok).numeric.x
  assert.deepEqual([f.n, f.mean, f.min, f.max], [6, 3.5, 1, 6])
  assert.ok(Math.abs((f.std as number) - Math.sqrt(35 / 12)) < 1e-12)
})

test('property: any partition of any rows, combined, equals one pass (exact where exactness is possible)', () => {
  const layout = new StatsLayout({
    columns: [
      { name: 'x', type: 'numeric', shift: 12.5 },
      { name: 'c', type: 'categorical', categories: ['a', 'b', 'c'] },
      { name: 't', type: 'text' },
      { name: 'y', type: 'label', categories: ['n', 'p'] }
    ],
    buckets: 256
  })
  const row = fc.tuple(
    fc.double({ min: -1e6, max: 1e6, noNaN: true }).map(x => x === 0 ? 0 : x), // no −0: min(0, −0) depends on the order
    fc.integer({ min: 0, max: 2 }),
    fc.array(fc.constantFrom(...WORDS), { maxLength: 6 }).map(ws => ws.join(' ')),
    fc.integer({ min: 0, max: 1 })
  )
  fc.assert(fc.property(fc.array(row, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 5 }), fc.nat(), (rows, k, seed) => {
    const rand = seededRandom(seed)
    const parts: CleanRow[][] = Array.from({ length: k }, () => [])
    for (const r of rows) parts[Math.floor(rand() * k)].push(r)
    const partials = parts.map(part => partialStats(layout, part))
    const combined = combineAll(layout, partials)
    const single = partialStats(layout, rows)
    const s = layout.numeric[0]
    for (let i = 0; i < layout.size; i++) {
      if (i === s.at + 1 || i === s.at + 2) assert.ok(Math.abs(single[i] - combined[i]) <= 1e-9 * Math.max(1, Math.abs(single[i])))
      else assert.equal(combined[i], single[i])
    }
    // and through the ring form, one peer per part: bit for bit the shard-order fold
    const vectors = partials.map((v, i) => toRingVector(layout, k, new Map([[i, v]])))
    assert.deepEqual(fromRingSum(layout, k, ringSum(vectors, vectors.map((_, i) => k - 1 - i))), combined)
  }), { numRuns: 200 })
})
