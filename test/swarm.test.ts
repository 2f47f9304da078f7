/**
 * The swarm with real processes: discovery through --join, the replicated
 * manifest, claims that converge, a killed peer's shards reassigned, a
 * restarted peer back with its identity, a conflicting job refused, and
 * malformed gossip from a stock libp2p node rejected.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { preSharedKey } from '@libp2p/pnet'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm, assignmentAgreed } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

/** A long job on a tiny model: the peers keep training while the test looks at the manifest. */
const JOB = ['--epochs', '10000', '--hidden', '16', '--batch-size', '32', '--shards', '32']
/** Fast liveness so the test does not wait long for a death to be noticed. */
const LIVENESS = ['--heartbeat-ms', '500', '--member-timeout', '3000']
const NAMES = ['a', 'b', 'c', 'd']

let swarm: LocalSwarm
const ids = new Map<string, string>()

before(async () => { swarm = await LocalSwarm.create() })
after(async () => { await swarm.stopAll() })

test('4 peers started one after another converge to one complete, disjoint, fair assignment', async () => {
  await swarm.start('a', [...JOB, ...LIVENESS])
  for (const name of NAMES.slice(1)) {
    await swarm.start(name, LIVENESS, 'a')
    await swarm.address(name)
  }
  // converged: one complete assignment that every peer sees, and fair (a complete one may be seen for a moment
  // before the claims rebalance: 11, 7, 7, 7 while the fourth peer takes its share)
  let last: unknown
  const statuses = await waitFor('4 peers to agree on a fair assignment', async () => {
    const all = await swarm.statuses(NAMES)
    if (all === undefined) return undefined
    last = all.map(s => s.shards.mine.length)
    const live = all.map(s => s.peerId)
    const seeAll = all.every(s => s.members.filter(m => m.live).length === 4)
    return seeAll && assignmentAgreed(all, live) && all.every(s => s.shards.mine.length === 8) ? all : undefined
  }, 60_000).catch(err => { throw new Error(`${(err as Error).message}; shards owned: ${JSON.stringify(last)}`) })
  for (const [i, s] of statuses.entries()) ids.set(NAMES[i], s.peerId)
  // every peer adopted the first peer's job
  assert.equal(new Set(statuses.map(s => s.job?.id)).size, 1)
  assert.equal(statuses[0].job?.epochs, 10000)
  // disjoint and complete: the peers' own shards partition all 32
  const mine = statuses.flatMap(s => s.shards.mine)
  assert.equal(mine.length, 32)
  assert.equal(new Set(mine).size, 32)
  // fair: 8 each
  for (const s of statuses) assert.equal(s.shards.mine.length, 8, `${s.peerId} owns ${s.shards.mine.length}`)
  // and every peer trains
  for (const s of statuses) assert.ok(s.state === 'training' || s.state === 'reducing', s.state)
})

test('a SIGKILLed peer is marked dead and its shards get live owners', async () => {
  const victim = ids.get('d')!
  swarm.proc('d').child.kill('SIGKILL')
  await swarm.proc('d').exited()
  const survivors = ['a', 'b', 'c']
  let last: unknown
  const statuses = await waitFor('the survivors to reassign the dead peer\'s shards, fairly', async () => {
    const all = await swarm.statuses(survivors)
    if (all === undefined) return undefined
    last = all.map(s => s.shards.mine.length)
    const live = survivors.map(n => ids.get(n)!)
    const dead = all.every(s => s.members.find(m => m.peerId === victim)?.state === 'dead')
    const counts = all.map(s => s.shards.mine.length)
    return dead && assignmentAgreed(all, live) && Math.max(...counts) - Math.min(...counts) <= 1 ? all : undefined
  }, 30_000).catch(err => { throw new Error(`${(err as Error).message}; shards owned: ${JSON.stringify(last)}`) })
  const counts = statuses.map(s => s.shards.mine.length).sort()
  assert.deepEqual(counts, [10, 11, 11])
  assert.ok(statuses.every(s => !Object.values(s.shards.owners).includes(victim)))
})

test('a peer restarted on its data dir keeps its peer id, reads its manifest back, and rejoins', async () => {
  const before = ids.get('c')!
  swarm.proc('c').child.kill('SIGTERM')
  const exit = await swarm.proc('c').exited()
  assert.equal(exit.code, 0, exit.stderr)
  // a clean stop releases its shards at once: the others own everything without waiting for a timeout
  await waitFor('a and b to own all shards', async () => {
    const all = await swarm.statuses(['a', 'b'])
    return all !== undefined && assignmentAgreed(all, [ids.get('a')!, ids.get('b')!]) ? true : undefined
  }, 20_000)
  // restarted without --join: it finds the swarm through the members its manifest remembers
  await swarm.start('c', LIVENESS)
  let last: unknown
  const s = await waitFor('c to be back with shards', async () => {
    const all = await swarm.statuses(['a', 'b', 'c'])
    last = all?.map(x => ({ id: x.peerId.slice(-6), state: x.state, peers: x.peers.length, members: x.members.map(m => `${m.peerId.slice(-6)}:${m.state}:${m.live}:${m.shards}`), unowned: x.shards.unowned }))
    if (all === undefined) return undefined
    const live = ['a', 'b', 'c'].map(n => ids.get(n)!)
    return assignmentAgreed(all, live) && all[2].shards.mine.length > 0 ? all[2] : undefined
  }, 40_000).catch(err => { throw new Error(`${(err as Error).message}; last: ${JSON.stringify(last)}`) })
  assert.equal(s.peerId, before)
  assert.equal(s.job?.epochs, 10000, 'the job came back from its own LevelDB')
})

test('a peer asking for a different job is refused with a clear error, and the swarm is unaffected', async () => {
  const before = await swarm.status('a')
  const proc = await swarm.start('e', ['--epochs', '7'], 'a')
  const r = await proc.exited(60_000)
  assert.equal(r.code, 1)
  assert.match(r.stderr, /trains job [0-9a-f]{16}.*was asked for job/)
  const after = await swarm.status('a') as StatusJson
  assert.equal(after.job?.id, before?.job?.id)
  assert.ok(!after.members.some(m => m.live && !['a', 'b', 'c'].map(n => ids.get(n)).includes(m.peerId)), 'the refused peer never became a live member')
  assert.ok(after.training!.step >= before!.training!.step)
})

test('malformed, oversized and forged gossip from a stock libp2p node is rejected and counted', async () => {
  const target = await swarm.status('a') as StatusJson
  const topic = `/peer/manifest/1.0.0/${target.job!.id}`
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // the swarm is private: this node holds its key (the swarm.key file is in the format pnet reads)
    connectionProtector: preSharedKey({ psk: await readFile(join(swarm.dataDir('a'), 'swarm.key')) }),
    services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, floodPublish: true }) }
  })
  try {
    await node.dial(multiaddr(target.addresses[0]))
    node.services.pubsub.subscribe(topic)
    await waitFor('the swarm peer to be a topic subscriber', () =>
      node.services.pubsub.getSubscribers(topic).some(p => p.toString() === target.peerId) ? true : undefined, 20_000)
    const attacker = node.peerId.toString()
    const owners = JSON.stringify(target.shards.owners)
    const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))
    const clock = { wall: Date.now() + 1000, counter: 0, peer: attacker }
    const bad: Uint8Array[] = [
      new Uint8Array([0xff, 0xfe, 0x00, 0x13]),
      enc({ v: 2, entries: [] }),
      enc({ v: 1, entries: [{ key: 'claims/s0001', value: { owner: 42 }, clock }] }),
      enc({ v: 1, entries: [{ key: 'nonsense/key', value: 1, clock }] }),
      // forged: a write that claims to be another peer's
      enc({ v: 1, entries: [{ key: 'claims/s0001', value: { owner: attacker }, clock: { ...clock, peer: target.peerId } }] }),
      // oversized (over the 256 KiB delta limit)
      enc({ v: 1, entries: [{ key: 'members/x', value: { state: 'alive', addresses: ['a'.repeat(300 * 1024)], heartbeat: 1 }, clock }] })
    ]
    for (const data of bad) await node.services.pubsub.publish(topic, data).catch(() => {})
    const after = await waitFor('the rejects to be counted', async () => {
      const s = await swarm.status('a')
      return s !== undefined && s.manifest!.deltasRejected - target.manifest!.deltasRejected >= bad.length ? s : undefined
    }, 20_000)
    assert.equal(after.state === 'training' || after.state === 'reducing', true, 'still training')
    assert.equal(after.job?.id, target.job?.id)
    // the shard the forged message tried to take is not the attacker's anywhere
    for (const name of ['a', 'b', 'c']) {
      const s = await swarm.status(name) as StatusJson
      assert.ok(!Object.values(s.shards.owners).includes(attacker), `${name}: the attacker owns nothing`)
      assert.ok(!s.members.some(m => m.peerId === attacker || m.peerId === 'x'), `${name}: no forged member`)
    }
    assert.ok(owners.length > 0)
  } finally {
    await node.stop()
  }
})
