/**
 * A peer that holds the swarm key and misbehaves: two `peer start` processes (the second joined with the
 * first's join token) train together while a stock libp2p node with the key floods malformed, forged and
 * oversized gossip on the manifest and rounds topics, sends oversized frames on every direct protocol, and
 * opens more streams than allowed. The two keep training; the first counts and drops what it sent
 * (`manifest.deltasRejected`, then graylisting: the rest is not even validated), shows its gossip score below
 * zero, never takes it for a member, and closes the oversized, surplus and idle streams.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import type { GossipSub } from '@chainsafe/libp2p-gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { joinTokenOf } from '../node/security/index.ts'
import { spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import type { PeerChild } from './helpers/peer-process.ts'
import { LOCAL, statusOf } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

type Status = Omit<StatusJson, 'peers' | 'ring'> & { peers: Array<{ peerId: string, gossipScore?: number, invalidMessages?: number }>, ring: NonNullable<StatusJson['ring']> }

const JOB = ['--epochs', '10000', '--hidden', '16', '--batch-size', '32', '--shards', '8']
const LIVENESS = ['--heartbeat-ms', '500', '--member-timeout', '4000']

let dir: { path: string, remove: () => Promise<void> }
const procs: PeerChild[] = []
let attacker: Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, pubsub: GossipSub }> | undefined

const dirOf = (name: string): string => join(dir.path, name)
const status = async (name: string): Promise<Status | undefined> => await statusOf(dirOf(name)) as Status | undefined
const training = (s: Status | undefined): boolean => s !== undefined && (s.state === 'training' || s.state === 'reducing')

before(async () => {
  dir = await tempDir('peer-flood-')
  procs.push(spawnPeer(['start', '--data-dir', dirOf('a'), ...LOCAL, ...JOB, ...LIVENESS]))
  const a = await waitFor('a to listen', async () => { const s = await status('a'); return s !== undefined && s.addresses.length > 0 ? s : undefined }, 60_000)
  const token = await joinTokenOf(dirOf('a'), a.addresses)
  assert.ok(token !== null, 'a private swarm by default')
  procs.push(spawnPeer(['start', '--data-dir', dirOf('b'), ...LOCAL, ...LIVENESS, '--join', token]))
})

after(async () => {
  await Promise.resolve(attacker?.stop()).catch(() => {})
  for (const p of procs) p.child.kill('SIGKILL')
  await Promise.all(procs.map(async p => await p.exited(10_000).catch(() => {})))
  await dir?.remove()
})

/** Reads a stream until it ends; resolves with the ms it stayed open (an error counts as the end). */
async function openFor (stream: Stream, started = performance.now()): Promise<number> {
  try {
    for await (const _ of stream.source) { /* the peer never answers these */ }
  } catch {}
  return performance.now() - started
}

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

test('a keyed peer flooding bad gossip and oversized frames: the swarm trains on, counts, drops, scores it down', async t => {
  const [a0] = await waitFor('a and b training together', async () => {
    const all = await Promise.all([status('a'), status('b')])
    return all.every(training) && all.every(s => s!.members.filter(m => m.live).length === 2) && all.every(s => s!.ring.completed > 0) ? all as Status[] : undefined
  }, 60_000)
  const jobId = a0.job!.id
  const manifestTopic = `/peer/manifest/1.0.0/${jobId}`
  const roundsTopic = `/peer/rounds/1.0.0/${jobId}`
  const keyHex = (await readFile(join(dirOf('a'), 'swarm.key'), 'utf8')).trim().split('\n')[2]
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${keyHex}`) }),
    services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, floodPublish: true }) }
  })
  const bad = node as unknown as NonNullable<typeof attacker>
  attacker = bad
  const me = bad.peerId.toString()
  const target = multiaddr(a0.addresses[0])
  await bad.dial(target)
  bad.services.pubsub.subscribe(manifestTopic)
  bad.services.pubsub.subscribe(roundsTopic)
  await waitFor('a as a subscriber of both topics', () =>
    [manifestTopic, roundsTopic].every(t => bad.services.pubsub.getSubscribers(t).some(p => p.toString() === a0.peerId)) ? true : undefined, 20_000, 100)

  // oversized frames on every protocol; then more sync streams than allowed, held open without a word
  const oversized = await Promise.all([
    ['/peer/manifest-sync/1.0.0', 64 * 1024 * 1024],
    ['/peer/state-sync/1.0.0', 2 * 1024 * 1024 * 1024],
    ['/peer/status/1.0.0', 1024 * 1024],
    ['/peer/allreduce/1.0.0', 100 * 1024 * 1024]
  ].map(async ([protocol, length]) => {
    try {
      const stream = await bad.dialProtocol(target, protocol as string, { signal: AbortSignal.timeout(5000) })
      void stream.sink((async function * () { yield varint(length as number); for (let i = 0; i < 64; i++) yield new Uint8Array(16 * 1024).fill(7) })()).catch(() => {})
      return [protocol, await openFor(stream)] as const
    } catch {
      return [protocol, -1] as const
    }
  }))

  const held = Array.from({ length: 6 }, async () => {
    const started = performance.now()
    try {
      return await openFor(await bad.dialProtocol(target, '/peer/manifest-sync/1.0.0', { signal: AbortSignal.timeout(5000) }), started)
    } catch {
      return 0
    }
  })
  // gossip: three bursts, two seconds apart; what a peer under the graylist threshold sends is not even validated
  const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))
  const clock = { wall: Date.now() + 60_000, counter: 0, peer: me }
  const kinds = (i: number): Uint8Array[] => [
    new Uint8Array([0xff, 0xfe, i & 0xff, 0x13]),
    enc({ v: 2, entries: [], i }),
    enc({ v: 1, entries: [{ key: 'claims/s0001', value: { owner: 42 }, clock: { ...clock, counter: i } }] }),
    // forged: writes that claim to be a member's
    enc({ v: 1, entries: [{ key: 'claims/s0001', value: { owner: me }, clock: { ...clock, counter: i, peer: a0.peerId } }] }),
    enc({ v: 1, entries: [{ key: `members/${me}`, value: { state: 'alive', addresses: ['x'.repeat(600)], heartbeat: 1 }, clock: { ...clock, counter: i } }] })
  ]
  let sent = 0
  for (let burst = 0; burst < 3; burst++) {
    for (let i = 0; i < 20; i++) {
      for (const data of kinds(burst * 100 + i)) {
        sent += 1
        await bad.services.pubsub.publish(manifestTopic, data).catch(() => {})
        await bad.services.pubsub.publish(roundsTopic, data).catch(() => {})
      }
    }
    // one delta over the 256 KiB limit
    sent += 1
    await bad.services.pubsub.publish(manifestTopic, enc({ v: 1, entries: [], pad: 'p'.repeat(300 * 1024 + burst) })).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 2000))
  }
  // and a message over gossip's 1 MiB limit: the peer's gossip stream is cut (the score must survive that)
  await bad.services.pubsub.publish(manifestTopic, new Uint8Array(2 * 1024 * 1024)).catch(() => {})

  let last: unknown
  const a1 = await waitFor('a to score the attacker below zero', async () => {
    const s = await status('a')
    last = { peers: s?.peers, manifest: s?.manifest, attackerConnections: bad.getConnections().length }
    const score = s?.peers.find(p => p.peerId === me)?.gossipScore
    return s !== undefined && score !== undefined && score < 0 ? s : undefined
  }, 10_000).catch(err => { throw new Error(`${(err as Error).message}; last: ${JSON.stringify(last)}`) })
  const rejected = a1.manifest!.deltasRejected - a0.manifest!.deltasRejected
  const score = a1.peers.find(p => p.peerId === me)!.gossipScore!
  assert.ok(rejected >= 10, `a counted ${rejected} rejected deltas`)
  assert.ok((a1.peers.find(p => p.peerId === me)?.invalidMessages ?? 0) >= 10, 'status counts the invalid messages per peer')
  assert.ok(rejected < sent, `a validated all ${sent} messages: the graylist should have dropped the later bursts (rejected ${rejected})`)
  assert.ok(score <= -80, `graylisted: score ${score}`)
  for (const p of a1.peers.filter(x => x.peerId !== me)) assert.ok((p.gossipScore ?? 0) >= 0, `an honest peer's score ${p.gossipScore}`)

  // the direct protocols: oversized frames end the stream at once; surplus streams are refused; idle ones time out
  for (const [protocol, ms] of oversized) {
    // (the ring reads a stream only within a round, from its predecessor: yamux's window holds the rest back)
    if (protocol === '/peer/allreduce/1.0.0') continue
    assert.ok(ms >= 0, `${protocol}: the stream did not open`)
    assert.ok(ms < 5000, `${protocol}: an oversized frame kept the stream open ${Math.round(ms)} ms`)
  }
  const lasted = await Promise.all(held.map(async h => await h))
  t.diagnostic(`sent ${sent} bad deltas (and as many round messages); a rejected ${rejected}, score ${score}; oversized streams closed after ${oversized.map(([p, ms]) => `${p} ${Math.round(ms)} ms`).join(', ')}; surplus/idle sync streams lasted ${lasted.map(Math.round).join(', ')} ms`)
  assert.ok(lasted.filter(ms => ms > 2000).length <= 4, `more than 4 concurrent sync streams stayed open: ${lasted.map(Math.round).join(', ')}`)
  assert.ok(lasted.every(ms => ms < 15_000), `an idle sync stream was kept past the timeout: ${lasted.map(Math.round).join(', ')}`)

  // and the swarm trained on: both peers, rounds completing, the attacker neither member nor owner
  const after = await waitFor('a and b to keep training', async () => {
    const all = await Promise.all([status('a'), status('b')])
    if (!all.every(training)) return undefined
    const [sa, sb] = all as Status[]
    return sa.training!.step >= a1.training!.step + 10 && sa.ring.completed > a1.ring.completed && sb.training!.step > a0.training!.step ? all as Status[] : undefined
  }, 30_000)
  for (const s of after) {
    assert.ok(!s.members.some(m => m.peerId === me), 'the attacker became a member')
    assert.ok(!Object.values(s.shards.owners).includes(me), 'the attacker owns a shard')
    assert.equal(s.job?.id, jobId)
  }
  assert.ok(procs.every(p => p.child.exitCode === null), 'a peer exited')
})
