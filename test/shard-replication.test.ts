/**
 * The replication service (node/shard-transfer/replication.ts) between real
 * in-process libp2p nodes (TCP, noise, yamux on loopback) serving real shard
 * files: three peers share one manifest view (the real manifest's gossip and
 * persistence are covered by test/data-replication.test.ts). From one
 * importer, each peer ends up holding what it keeps and no more, every shard
 * on R = 2; `ensureShard` fetches a shard out of turn; when the importer goes
 * the other two copy what they lack from each other.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { ReplicationService, ShardService, createDataDirShardStore, fetchDataset } from '../node/shard-transfer/index.ts'
import type { HolderManifest } from '../node/shard-transfer/index.ts'
import { datasetsRoot, importDataset, readDescription, shardPath } from '../node/data/imported/index.ts'
import type { DatasetDescription } from '../node/data/imported/index.ts'
import { planClaims } from '../node/manifest/claims.ts'
import type { HoldingValue } from '../protocols/manifest/index.ts'

/** One replica of the swarm's view, as every peer's manifest converges to it: owners, live members, holder records. */
class SharedView {
  readonly events = new EventEmitter()
  readonly owners = new Map<string, string | null>()
  readonly holders = new Map<string, HoldingValue>()
  live: string[] = []
  readonly shards: string[]
  constructor (shards: string[]) {
    this.shards = shards
  }
  /** Claims as every peer's ticks would settle them. */
  settleClaims (): void {
    for (let i = 0; i < 10; i++) {
      for (const me of this.live) {
        const plan = planClaims({ me, shards: this.shards, owners: this.owners, live: this.live, held: new Set(this.holders.get(me)?.shards) })
        for (const s of plan.release) this.owners.set(s, null)
        for (const s of plan.claim) this.owners.set(s, me)
      }
    }
    this.events.emit('change')
  }

  /** The view of `me`; with `live`, its own idea of who is live (views differ for a moment when a member leaves). */
  manifestOf (me: string, live?: () => string[]): HolderManifest {
    return {
      peerId: me,
      shardIds: () => this.shards,
      owners: () => new Map(this.owners),
      live: live ?? (() => [...this.live]),
      holders: () => new Map(this.holders),
      announceHolding: async h => {
        // as the manifest does: a change only when the record changed
        if (JSON.stringify(this.holders.get(me)) === JSON.stringify(h)) return
        this.holders.set(me, h)
        this.events.emit('change')
      },
      on: (_e, fn) => this.events.on('change', fn),
      off: (_e, fn) => this.events.off('change', fn)
    }
  }
}

let base: string
let description: DatasetDescription
let id: string
const nodes: Libp2p[] = []
const servers: ShardService[] = []
const dirs: string[] = []

before(async () => {
  base = mkdtempSync(join(tmpdir(), 'peer-shard-replication-'))
  const lines = ['x,kind,label']
  for (let i = 0; i < 1200; i++) lines.push(`${(i % 97) / 10},${['a', 'b', 'c'][i % 3]},${i % 5 === 0 ? 'yes' : 'no'}`)
  writeFileSync(join(base, 'data.csv'), `${lines.join('\n')}\n`)
  for (const name of ['a', 'b', 'c']) dirs.push(join(base, name))
  const r = await importDataset(join(base, 'data.csv'), { label: 'label', shards: 6, outDir: datasetsRoot(dirs[0]) })
  id = r.datasetId
  description = readDescription(r.dir, id)
  for (const dir of dirs) {
    const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(n)
    const s = new ShardService({ node: n, store: createDataDirShardStore(dir) })
    await s.start()
    servers.push(s)
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  // the joiners have the description and the test split only
  for (const i of [1, 2]) await fetchDataset(nodes[i], [nodes[0].peerId], id, dirs[i], { shards: [] })
})

after(async () => {
  for (const s of servers) await s.stop()
  await Promise.all(nodes.map(async n => { await n.stop() }))
  rmSync(base, { recursive: true, force: true })
})

async function until (what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

test('from one importer: each peer holds what it keeps, every shard on R = 2; ensureShard fetches out of turn; the importer goes and nothing is lost', async () => {
  const shards = description.shards.map((_, i) => `s${String(i).padStart(4, '0')}`)
  const view = new SharedView(shards)
  const ids = nodes.map(n => n.peerId.toString())
  view.live = [...ids]
  const services = nodes.map((node, i) => new ReplicationService({ node, manifest: view.manifestOf(ids[i]) }, { dataDir: dirs[i], description, datasetId: id, intervalMs: 50, dropAfterMs: 200 }))
  try {
    assert.ok(services.every(s => !s.isStarted))
    for (const s of services) s.start()
    assert.ok(services.every(s => s.isStarted))
    view.settleClaims()
    const settledAt = (live: number[]): boolean => live.every(i => {
      const st = services[i].status()
      return st.kept > 0 && st.held === st.kept && st.belowReplicas.length === 0 && st.fetching === null
    })
    await until('every peer to hold exactly what it keeps', () => settledAt([0, 1, 2]))
    for (const i of [1, 2]) {
      const st = services[i].status()
      assert.equal(st.held, 4, `a joiner holds R/N = 2/3 of 6 shards: ${JSON.stringify(st)}`)
      assert.ok(Object.values(st.fetches).every(n => n === 1))
    }
    assert.equal(services[0].status().dropped, 2, 'the importer dropped what it does not keep')
    for (const s of shards) assert.equal(services[0].status().copies[s], 2, s)

    // a shard b does not keep, asked for (the streaming reader's hook): fetched, then dropped again as surplus
    const other = shards.find(s => !services[1].isLocal(s)) as string
    const arrived = new Promise(resolve => { services[1].once('shard.local', resolve) })
    await services[1].ensureShard(other)
    await arrived
    assert.ok(existsSync(shardPath(join(datasetsRoot(dirs[1]), id), description.shards[services[1].indexOf(other) as number])))
    await until('b to drop the surplus shard again', () => !services[1].isLocal(other) && services[1].status().drops[other] === 1)

    // the importer goes (killed: its records stay, but it is no longer live)
    services[0].stop()
    assert.equal(services[0].isStarted, false)
    await servers[0].stop()
    view.live = [ids[1], ids[2]]
    view.settleClaims()
    await until('b and c to hold every shard', () => settledAt([1, 2]) && services[1].status().held === 6 && services[2].status().held === 6)
    for (const i of [1, 2]) for (const s of shards) assert.equal(services[i].status().copies[s], 2)
  } finally {
    for (const s of services) s.stop()
  }
})

test('ensureShard of an unknown shard is a RangeError; a shard no live peer holds is listed as unavailable while it waits; stop rejects whoever waits', async () => {
  const view = new SharedView(['s0000'])
  view.live = [nodes[2].peerId.toString()]
  const lonely = new ReplicationService({ node: nodes[2], manifest: view.manifestOf(view.live[0]) }, { dataDir: join(base, 'empty'), description, datasetId: id, intervalMs: 50 })
  lonely.start()
  await assert.rejects(lonely.ensureShard('s9999'), { name: 'RangeError' })
  const waiting = lonely.ensureShard('s0000')
  // no one else is live: the wait is visible in the status (and so in `peer status` and the metrics)
  await until('s0000 to be listed as unavailable', () => lonely.status().unavailable.s0000 !== undefined)
  lonely.stop()
  await assert.rejects(waiting, /replication stopped/)
})

test('a peer that leaves hands off the shards only it holds: the others fetch them from it before it goes', async () => {
  const shards = description.shards.map((_, i) => `s${String(i).padStart(4, '0')}`)
  const fresh = join(base, 'fresh')
  await servers[0].start()
  await fetchDataset(nodes[1], [nodes[2].peerId], id, fresh, { shards: [] })
  const view = new SharedView(shards)
  const [a, b] = [nodes[0].peerId.toString(), nodes[1].peerId.toString()]
  view.live = [a]
  // a holds everything (it imported it; the first test left it holding what it kept, so give it all back)
  await fetchDataset(nodes[0], [nodes[1].peerId, nodes[2].peerId], id, dirs[0])
  const leaver = new ReplicationService({ node: nodes[0], manifest: view.manifestOf(a) }, { dataDir: dirs[0], description, datasetId: id, intervalMs: 50, dropAfterMs: 60_000 })
  // b has heard that a leaves: a is not live for it, yet a's record says what a holds
  const joiner = new ReplicationService({ node: nodes[1], manifest: view.manifestOf(b, () => [b]) }, { dataDir: fresh, description, datasetId: id, intervalMs: 50 })
  try {
    leaver.start()
    view.settleClaims()
    await until('a to announce its shards', () => view.holders.get(a)?.shards.length === shards.length)
    assert.deepEqual(leaver.soleCopies(), [], 'alone: nothing to hand off')
    // b joins, and a says at once that it leaves: b no longer counts it as live, but fetches from it
    view.live = [a, b]
    assert.equal(leaver.soleCopies().length, shards.length)
    joiner.start()
    const left = await leaver.handOff(20_000)
    assert.deepEqual(left, [])
    assert.equal(view.holders.get(b)?.shards.length, shards.length, 'b holds every shard before a is gone')
  } finally {
    leaver.stop()
    joiner.stop()
  }
})
