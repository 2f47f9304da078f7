/**
 * Swarm-wide statistics through the real ring all-reduce: three libp2p nodes,
 * each holding the partial statistics of the shards it owns, sum them with
 * `Ring.run` over noise + yamux streams; the result equals the statistics a
 * single process computed at import.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import {
  fromRingSum, importDataset, partialStatsOfTable, readDescription, readShard, shardPath, statsFromDescription, statsLayoutOf, toRingVector
} from '../node/data/imported/index.ts'
import { Ring, createLibp2pRingTransport } from '../node/ring/index.ts'

test('3 peers sum the partial statistics of their shards with the ring: equal to the single-process statistics', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peer-swarm-stats-'))
  const nodes = await Promise.all([0, 1, 2].map(async () => await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })))
  try {
    const rows = ['amount,kind,note,label']
    for (let i = 0; i < 1200; i++) rows.push(`${(1000 + (i * 37) % 501) / 7},${['a', 'b', 'c'][i % 3]},"word${i % 17} other${i % 5}",${i % 4 === 0 ? 'yes' : 'no'}`)
    writeFileSync(join(dir, 'data.csv'), `${rows.join('\n')}\n`)
    const r = await importDataset(join(dir, 'data.csv'), { label: 'label', text: ['note'], shards: 6, buckets: 256, outDir: join(dir, 'datasets') })
    const d = readDescription(r.dir)
    const layout = statsLayoutOf(d)
    const schema = { columns: d.columns, buckets: d.transform.buckets }
    const perShard = d.shards.map(s => partialStatsOfTable(layout, schema, readShard(shardPath(r.dir, s))))
    for (const a of nodes) for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
    const rings = nodes.map(node => new Ring({ transport: createLibp2pRingTransport(node) }))
    for (const ring of rings) await ring.start()
    const members = nodes.map(n => n.peerId.toString()).sort()
    const owned = [[0, 3], [1, 4], [2, 5]]
    // each peer: a map over the shards it owns → its ring vector; the ring: the sum over peers
    const results = await Promise.all(rings.map(async (ring, i) => await ring.run({
      round: 1,
      attempt: 0,
      members,
      self: nodes[i].peerId.toString(),
      vector: toRingVector(layout, d.shards.length, new Map(owned[i].map(s => [s, perShard[s]])))
    })))
    const stored = statsFromDescription(layout, d.stats)
    for (const res of results) {
      assert.ok(res.ok, res.ok ? '' : res.reason)
      if (res.ok) assert.deepEqual(fromRingSum(layout, d.shards.length, res.sum), stored)
    }
    for (const ring of rings) await ring.stop()
  } finally {
    await Promise.all(nodes.map(async n => await n.stop()))
    rmSync(dir, { recursive: true, force: true })
  }
})
