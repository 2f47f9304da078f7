/**
 * The network layer's protection, in one process: the private network (same key connects, another key or
 * none does not), the allow-list at the connection gater (both directions, counted), gossip from authors off
 * the list, gossipsub scoring (a peer whose messages are rejected goes negative and is then ignored), and a
 * security summary that names no secret.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import type { GossipSub } from '@chainsafe/libp2p-gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { startNetwork } from '../node/network/index.ts'
import type { Network, NetworkInit } from '../node/network/index.ts'
import { encodeSwarmKeyFile, generateSwarmKey } from '../node/security/index.ts'
import { waitFor } from './helpers/peer-process.ts'

const logger = pino({ level: 'silent' })
const stoppers: Array<() => Promise<void>> = []
after(async () => { await Promise.all(stoppers.map(async s => { await s().catch(() => {}) })) })

const newKey = async (): Promise<PrivateKey> => await generateKeyPair('Ed25519') as unknown as PrivateKey
const idOf = (key: PrivateKey): string => peerIdFromPrivateKey(key as never).toString()

async function net (init: Partial<NetworkInit> = {}): Promise<Network> {
  const n = await startNetwork({ privateKey: await newKey(), listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger, ...init })
  stoppers.push(async () => { await n.stop() })
  return n
}

/** A refused dial may take until the private network's handshake gives up (the two sides wait on each other). */
async function dials (from: Network, to: Network): Promise<boolean> {
  try {
    await from.dial(to.addresses()[0], AbortSignal.timeout(6000))
    await new Promise(resolve => setTimeout(resolve, 200))
    return from.isConnected(to.peerId) && to.isConnected(from.peerId)
  } catch {
    return false
  }
}

test('private network: the same key connects; another key, or none, does not', async () => {
  const psk = generateSwarmKey()
  const a = await net({ psk })
  const b = await net({ psk })
  const [same, other, none, out, open] = await Promise.all([
    dials(b, a),
    dials(await net({ psk: generateSwarmKey() }), a),
    dials(await net({}), a),
    dials(a, await net({})),
    dials(await net({}), await net({}))
  ])
  assert.equal(same, true, 'the same key')
  assert.equal(other, false, 'another key')
  assert.equal(none, false, 'no key, into a private swarm')
  assert.equal(out, false, 'private, out to an open node')
  assert.equal(open, true, 'open to open still works')
  // what status may show: that a key is in use, and a fingerprint; never the key
  assert.equal(a.security.privateNetwork, true)
  assert.match(a.security.keyFingerprint ?? '', /^[0-9a-f]{16}$/)
  assert.equal(a.security.keyFingerprint, b.security.keyFingerprint)
  const shown = JSON.stringify(a.security)
  for (const form of ['hex', 'base64', 'base64url'] as const) assert.ok(!shown.includes(Buffer.from(psk).toString(form)))
})

test('allow-list: refused in both directions once identified, counted; the listed peer connects', async () => {
  const psk = generateSwarmKey()
  const insiderKey = await newKey()
  const a = await net({ psk, allow: [idOf(insiderKey)] })
  assert.equal(a.security.allowList, 1)
  const insider = await net({ psk, privateKey: insiderKey })
  const outsider = await net({ psk })
  assert.equal(await dials(outsider, a), false, 'inbound from an unlisted peer')
  assert.ok(a.security.refused >= 1)
  const before = a.security.refused
  assert.equal(await dials(a, outsider), false, 'outbound to an unlisted peer')
  assert.ok(a.security.refused > before)
  assert.equal(await dials(insider, a), true, 'the listed peer')
})

/** A stock gossipsub node with the swarm key (the public library, StrictSign as ours). */
async function stockGossip (psk: Uint8Array): Promise<Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, pubsub: GossipSub }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: encodeSwarmKeyFile(psk) }),
    services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, floodPublish: true }) }
  })
  stoppers.push(async () => { await node.stop() })
  return node as never
}

test('gossip scoring: a peer whose messages are rejected goes negative, then is ignored; an honest one does not', async () => {
  const psk = generateSwarmKey()
  const topic = '/peer/test-score/1.0.0'
  const a = await net({ psk })
  const honest = await net({ psk })
  let validated = 0
  let delivered = 0
  a.subscribe(topic, () => { delivered += 1 }, (_from, data) => { validated += 1; return data[0] === 1 })
  honest.subscribe(topic, () => {}, () => true)
  const bad = await stockGossip(psk)
  bad.services.pubsub.subscribe(topic)
  await honest.dial(a.addresses()[0])
  await bad.dial(multiaddr(a.addresses()[0]))
  await waitFor('both to see a as a subscriber', () =>
    bad.services.pubsub.getSubscribers(topic).some(p => p.toString() === a.peerId) && honest.node.services.pubsub.getSubscribers(topic).some(p => p.toString() === a.peerId) ? true : undefined, 10_000, 50)
  for (let i = 0; i < 5; i++) await honest.publish(topic, new Uint8Array([1, i]))
  await waitFor('the honest messages', () => delivered >= 5 ? true : undefined, 10_000, 50)
  // the first burst is validated (and rejected)…
  for (let i = 0; i < 20; i++) await bad.services.pubsub.publish(topic, new Uint8Array([0, i])).catch(() => {})
  await waitFor('the first burst to be judged', () => validated >= 25 ? true : undefined, 10_000, 50)
  const badId = bad.peerId.toString()
  const score = await waitFor('a negative score', () => { const s = a.gossipScore(badId); return s < 0 ? s : undefined }, 5000, 50)
  assert.ok(score <= -80, `20 invalid messages put the peer below the graylist threshold (score ${score})`)
  assert.ok(a.gossipScore(honest.peerId) >= 0, `the honest peer's score ${a.gossipScore(honest.peerId)}`)
  assert.ok((a.connectedPeers().find(p => p.peerId === badId)?.gossipScore ?? 0) <= -80, 'status shows the score')
  assert.ok((a.connectedPeers().find(p => p.peerId === badId)?.invalidMessages ?? 0) >= 19)
  // gossipsub 14 starts a peer's stats afresh when its stream comes back (which the peer can force): the
  // penalty kept outside the router survives that
  const router = a.node.services.pubsub.score as unknown as { addPeer: (id: string) => void, scoreCache: Map<string, unknown> }
  router.addPeer(badId)
  router.scoreCache.delete(badId)
  assert.ok(a.gossipScore(badId) <= -80, `the score was washed: ${a.gossipScore(badId)}`)
  // …then, graylisted, what it sends is dropped before validation (a cached score lives one heartbeat)
  await new Promise(resolve => setTimeout(resolve, 2200))
  const judged = validated
  for (let i = 0; i < 20; i++) await bad.services.pubsub.publish(topic, new Uint8Array([0, 100 + i])).catch(() => {})
  await new Promise(resolve => setTimeout(resolve, 500))
  assert.equal(validated, judged, 'a graylisted peer\'s messages are not even validated')
  // the honest peer still gets through
  await honest.publish(topic, new Uint8Array([1, 99]))
  await waitFor('an honest message after the flood', () => delivered >= 6 ? true : undefined, 5000, 50)
})

test('gossip with an allow-list: a message authored off the list is rejected even when relayed by a listed peer', async () => {
  const psk = generateSwarmKey()
  const relayKey = await newKey()
  const topic = '/peer/test-allow/1.0.0'
  const a = await net({ psk, allow: [idOf(relayKey)] })
  let delivered = 0
  a.subscribe(topic, () => { delivered += 1 }, () => true)
  // the relay is listed, but forwards what a second identity (not listed) wrote; the relay's own messages pass
  const relay = await net({ psk, privateKey: relayKey })
  relay.subscribe(topic, () => {}, () => true)
  const author = await net({ psk })
  author.subscribe(topic, () => {}, () => true)
  await author.dial(relay.addresses()[0])
  await relay.dial(a.addresses()[0])
  await waitFor('the mesh', () =>
    author.node.services.pubsub.getMeshPeers(topic).includes(relay.peerId) && relay.node.services.pubsub.getMeshPeers(topic).includes(a.peerId) ? true : undefined, 10_000, 50)
  await relay.publish(topic, new Uint8Array([1]))
  await waitFor('the relay\'s own message', () => delivered === 1 ? true : undefined, 5000, 50)
  await author.publish(topic, new Uint8Array([2]))
  await waitFor('the unlisted author\'s message to be refused', () => a.security.gossipRefused >= 1 ? true : undefined, 5000, 50)
  assert.equal(delivered, 1)
})
