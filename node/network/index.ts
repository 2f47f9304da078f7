/**
 * The libp2p host: TCP, noise, yamux, identify, ping, bootstrap from `--join`,
 * mDNS on the LAN, and gossipsub with signed messages and peer scoring. Turns
 * libp2p's events into the few the peer needs, and offers
 * dial/handle/publish/subscribe.
 *
 * Security: with a swarm key (`psk`), every connection is wrapped in libp2p's
 * private network layer before the noise handshake, so a node without the key
 * cannot open one; with an allow-list, the connection gater refuses every peer
 * not on it once the handshake has proven who it is.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const net = await startNetwork({ privateKey, psk, allow: null, listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger })
 * net.subscribe(topic, (from, data) => { … }, (from, data) => isValid(data))
 */
import { EventEmitter } from 'node:events'
import { createLibp2p } from 'libp2p'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { Registry } from 'prom-client'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { bootstrap } from '@libp2p/bootstrap'
import { mdns } from '@libp2p/mdns'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import type { GossipSub } from '@chainsafe/libp2p-gossipsub'
import { TopicValidatorResult } from '@libp2p/interface'
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { encodeSwarmKeyFile, swarmKeyFingerprint } from '../security/index.ts'
import { InvalidMessagePenalty, PEER_SCORE_THRESHOLDS, peerScoreParams, topicScoreParams } from './gossip-score.ts'

export { loadOrCreateKey, KEY_FILE } from './key.ts'
export { ReconnectService, reconnect, backoffDelay, DEFAULT_BACKOFF } from './reconnect.ts'
export type { BackoffOptions, ReconnectComponents, ReconnectInit, ReconnectNetwork, ReconnectPeerStatus, ReconnectStatus } from './reconnect.ts'
export { connectMembers, dialJoinPeers, joinSwarm, waitForPeers } from './join.ts'
export type { ConnectComponents, JobConflict, JoinComponents, JoinInit, JoinManifest, Joined, WaitForPeersInit } from './join.ts'
export { JobConflictError, JoinFailedError } from './errors.ts'
export { TopicValidatorResult }
export type { Libp2p, PeerId, Stream }

/** Gossip messages are manifest deltas and round announcements: small. 1 MiB bounds what a peer may send. */
export const MAX_GOSSIP_BYTES = 1024 * 1024

/** yamux's per-stream receive window: 256 KiB by default; the ring sends blocks of up to 1 MiB. */
const STREAM_WINDOW_BYTES = 4 * 1024 * 1024
const MAX_STREAM_WINDOW_BYTES = 16 * 1024 * 1024

/**
 * The private network layer's nonce exchange (24 bytes each way) must finish within this. libp2p's default of
 * 1 s is short for a peer whose event loop is busy with a training step; the whole inbound upgrade is bounded
 * by libp2p's own 10 s anyway.
 */
const PNET_HANDSHAKE_TIMEOUT_MS = 5000

/** Gossipsub keeps one stream per peer and direction; a few more allow for replacements racing old ones. */
const MAX_GOSSIP_STREAMS = 4

export interface NetworkInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on (`/ip4/0.0.0.0/tcp/4001`; port 0 picks a free port). */
  listen: string[]
  /** Multiaddrs with /p2p/<id> of peers to join through. */
  join: string[]
  mdns: boolean
  logger: Logger
  /** The swarm key (32 bytes): a private network. Null or absent: an open swarm. */
  psk?: Uint8Array | null
  /** Peer ids allowed to connect (this peer's own needn't be listed). Null or absent: any peer (with the key). */
  allow?: Iterable<string> | null
  /**
   * The least time a connection's ping may take before libp2p drops the connection (at least its default, 5 s). The peer
   * passes its member timeout: a neighbour busy with a long step (seconds of synchronous compute with a big
   * model) keeps its connections for as long as it keeps its membership.
   */
  minPingTimeoutMs?: number
}

/** What status may show about the network's protection: never the key itself. */
export interface NetworkSecurity {
  /** A swarm key is in use: only nodes holding it can connect. */
  privateNetwork: boolean
  /** A short hash of the swarm key (equal on every member of the swarm), or null. */
  keyFingerprint: string | null
  /** Peer ids on the allow-list, or null without one. */
  allowList: number | null
  /** Connections refused (and dials not made) because the peer is not on the allow-list. */
  refused: number
  /** Gossip messages dropped because their author is not on the allow-list. */
  gossipRefused: number
}

export type Services = {
  identify: ReturnType<ReturnType<typeof identify>>
  ping: ReturnType<ReturnType<typeof ping>>
  pubsub: GossipSub
}

export interface NetworkEvents {
  'peer.connected': [string]
  'peer.disconnected': [string]
}

export type GossipHandler = (from: string, data: Uint8Array) => void

/** What of gossipsub's (v14) internals `Network.reopenGossipStream` reads and drives. */
interface GossipRouterStreams {
  peers: Map<string, PeerId>
  streamsOutbound: Map<string, { rawStream: Stream, close: () => Promise<void> }>
  outboundInflightQueue: { push: (item: { peerId: PeerId, connection: Connection }) => void }
}

export class Network extends EventEmitter<NetworkEvents> {
  readonly node: Libp2p<Services>
  readonly peerId: string
  private readonly logger: Logger
  private readonly handlers = new Map<string, GossipHandler>()
  private readonly allow: ReadonlySet<string> | null
  private readonly penalty: InvalidMessagePenalty
  readonly security: NetworkSecurity
  /** libp2p's own metrics (connections, streams, protocols), merged into `GET /metrics` by node/ops. */
  metricsRegistry: Registry | null = null

  constructor (node: Libp2p<Services>, logger: Logger, security: NetworkSecurity = { privateNetwork: false, keyFingerprint: null, allowList: null, refused: 0, gossipRefused: 0 }, allow: ReadonlySet<string> | null = null, penalty: InvalidMessagePenalty = new InvalidMessagePenalty()) {
    super()
    this.node = node
    this.peerId = node.peerId.toString()
    this.logger = logger
    this.security = security
    this.allow = allow
    this.penalty = penalty
    node.addEventListener('peer:connect', evt => { this.emit('peer.connected', evt.detail.toString()) })
    node.addEventListener('peer:disconnect', evt => { this.emit('peer.disconnected', evt.detail.toString()) })
    node.addEventListener('connection:close', evt => { this.reopenGossipStream(evt.detail.remotePeer) })
    node.services.pubsub.addEventListener('gossipsub:message', evt => {
      const { msg } = evt.detail
      const handler = this.handlers.get(msg.topic)
      if (handler === undefined || msg.type !== 'signed') return
      try {
        handler(msg.from.toString(), msg.data)
      } catch (err) {
        this.logger.warn({ err, topic: msg.topic }, 'gossip handler failed')
      }
    })
  }

  /**
   * Gossipsub (v14) keeps one outbound stream per peer and opens none while it has one; a connection that
   * closes while the peer has another one open (the peer redialled before this side saw the old one die, as
   * after a cut whose far side dropped its connections) fires no disconnect. The router would go on writing to
   * the closed connection's stream, and the peer would hear nothing this peer publishes though connected
   * (issue 12). So the stream is replaced by one on a connection still open, which also announces this peer's
   * subscriptions again; the peer stays in the router, its score kept.
   */
  private reopenGossipStream (peer: PeerId): void {
    const open = this.node.getConnections(peer).filter(c => c.status === 'open')
    // none open: peer:disconnect follows, and the router removes the peer
    if (open.length === 0) return
    const router = this.node.services.pubsub as unknown as Partial<GossipRouterStreams>
    // internals another gossipsub version may not have: then nothing is done here (never a throw in a listener)
    if (!(router.peers instanceof Map) || !(router.streamsOutbound instanceof Map) || typeof router.outboundInflightQueue?.push !== 'function') return
    const id = peer.toString()
    const stream = router.streamsOutbound.get(id)
    if (!router.peers.has(id) || stream === undefined || open.some(c => c.streams.includes(stream.rawStream))) return
    router.streamsOutbound.delete(id)
    stream.close().catch(() => {})
    this.logger.debug({ peer: id }, 'gossip stream was on a closed connection: reopening it on another')
    // the router's own queue: it opens outbound streams one at a time, and skips a peer that has one again
    router.outboundInflightQueue.push({ peerId: peer, connection: open[open.length - 1] })
  }

  /** Addresses others can dial, each with /p2p/<id>. */
  addresses (): string[] {
    return this.node.getMultiaddrs().map(ma => ma.toString())
  }

  /**
   * Connected peers with their addresses, gossip scores (negative: the peer sent invalid messages; below −80
   * all it sends is ignored) and the invalid gossip messages they sent (decaying by 1 % a second).
   */
  connectedPeers (): Array<{ peerId: string, addresses: string[], gossipScore: number, invalidMessages: number }> {
    const byPeer = new Map<string, string[]>()
    for (const conn of this.node.getConnections()) {
      const id = conn.remotePeer.toString()
      const list = byPeer.get(id) ?? []
      list.push(conn.remoteAddr.toString())
      byPeer.set(id, list)
    }
    return [...byPeer].map(([peerId, addresses]) => ({
      peerId,
      addresses,
      gossipScore: roundScore(this.gossipScore(peerId)),
      invalidMessages: Math.round(this.penalty.count(peerId))
    }))
  }

  isConnected (peer: string): boolean {
    return this.node.getConnections(peerIdFromString(peer)).length > 0
  }

  /** Dials a multiaddr (with /p2p/<id>) or a known peer id. */
  async dial (target: string | Multiaddr, signal?: AbortSignal): Promise<string> {
    const conn = typeof target === 'string' && !target.startsWith('/')
      ? await this.node.dial(peerIdFromString(target), { signal })
      : await this.node.dial(typeof target === 'string' ? multiaddr(target) : target, { signal })
    return conn.remotePeer.toString()
  }

  /** Records where a peer can be reached (from the manifest), so it can be dialled by id. */
  async learnAddresses (peer: string, addresses: string[]): Promise<void> {
    if (peer === this.peerId || addresses.length === 0) return
    try {
      await this.node.peerStore.merge(peerIdFromString(peer), { multiaddrs: addresses.map(a => multiaddr(a)) })
    } catch (err) {
      this.logger.debug({ err, peer }, 'could not record addresses')
    }
  }

  /**
   * Subscribes to a topic. `validate(author, data)` runs before a message is
   * delivered or forwarded: false rejects it (gossipsub then lowers the score
   * of the peer that sent it, and prunes and graylists one that keeps at it).
   */
  subscribe (topic: string, handler: GossipHandler, validate: (from: string, data: Uint8Array) => boolean): void {
    const pubsub = this.node.services.pubsub
    // score this topic (the parameters object is the one the router reads)
    pubsub.opts.scoreParams.topics[topic] ??= topicScoreParams()
    pubsub.topicValidators.set(topic, (propagationSource, msg) => {
      const reject = (): TopicValidatorResult => {
        // honest peers validate before they forward, so whoever handed us an invalid message is to blame
        this.penalty.record(propagationSource.toString())
        return TopicValidatorResult.Reject
      }
      // StrictSign: every message names and is signed by its author
      if (msg.type !== 'signed' || msg.data.byteLength > MAX_GOSSIP_BYTES) return reject()
      // with an allow-list, messages written by peers off the list are dropped (ignored: a relay without a list
      // of its own may forward them in good faith)
      if (this.allow !== null && !this.allow.has(msg.from.toString()) && msg.from.toString() !== this.peerId) {
        this.security.gossipRefused += 1
        return TopicValidatorResult.Ignore
      }
      try {
        return validate(msg.from.toString(), msg.data) ? TopicValidatorResult.Accept : reject()
      } catch {
        return reject()
      }
    })
    this.handlers.set(topic, handler)
    pubsub.subscribe(topic)
  }

  unsubscribe (topic: string): void {
    this.handlers.delete(topic)
    this.node.services.pubsub.topicValidators.delete(topic)
    this.node.services.pubsub.unsubscribe(topic)
  }

  async publish (topic: string, data: Uint8Array): Promise<void> {
    await this.node.services.pubsub.publish(topic, data)
  }

  /**
   * Gossipsub's score of a peer (negative: it has misbehaved; below −80 everything it sends is ignored). The
   * router forgets a peer whose gossip stream failed (and starts it afresh when it returns); the invalid
   * messages counted here are not forgotten, so the score shown is never above what they cost.
   */
  gossipScore (peer: string): number {
    const router = this.node.services.pubsub.getScore(peer)
    const own = this.penalty.score(peer)
    return own < 0 ? Math.min(router, own) : router
  }

  async stop (): Promise<void> {
    await this.node.stop()
  }
}

function roundScore (score: number): number {
  return Math.round(score * 1000) / 1000
}

export async function startNetwork (init: NetworkInit): Promise<Network> {
  const peerDiscovery = []
  if (init.join.length > 0) peerDiscovery.push(bootstrap({ list: init.join, timeout: 0 }))
  if (init.mdns) peerDiscovery.push(mdns({ interval: 2000 }))
  const psk = init.psk ?? null
  const allow = init.allow != null ? new Set([...init.allow].map(id => peerIdFromString(id).toString())) : null
  const security: NetworkSecurity = {
    privateNetwork: psk !== null,
    keyFingerprint: psk !== null ? swarmKeyFingerprint(psk) : null,
    allowList: allow?.size ?? null,
    refused: 0,
    gossipRefused: 0
  }
  const self = peerIdFromPrivateKey(init.privateKey).toString()
  const penalty = new InvalidMessagePenalty()
  const denied = (peer: PeerId): boolean => {
    if (allow === null) return false
    const id = peer.toString()
    if (id === self || allow.has(id)) return false
    security.refused += 1
    init.logger.debug({ peer: id }, 'refused a peer not on the allow-list')
    return true
  }
  const metricsRegistry = new Registry()
  const node = await createLibp2p({
    metrics: prometheusMetrics({ registry: metricsRegistry, collectDefaultMetrics: false }),
    privateKey: init.privateKey,
    addresses: { listen: init.listen },
    transports: [tcp()],
    // the private network layer runs under noise: without the key, not even noise's first message gets through
    ...(psk !== null ? { connectionProtector: preSharedKey({ psk: encodeSwarmKeyFile(psk), timeout: PNET_HANDSHAKE_TIMEOUT_MS }) } : {}),
    // the allow-list is checked once the encryption handshake has proven the remote's peer id, in both
    // directions, and before dialling a peer id (mDNS, the peer store) at all
    connectionGater: {
      denyDialPeer: async peer => denied(peer),
      denyInboundEncryptedConnection: async peer => denied(peer),
      denyOutboundEncryptedConnection: async peer => denied(peer)
    },
    connectionEncrypters: [noise()],
    // yamux grows a stream's window only when it measures a round-trip time above 0 ms, which loopback and
    // fast LANs never show: start it large enough for the all-reduce's blocks
    streamMuxers: [yamux({ initialStreamWindowSize: STREAM_WINDOW_BYTES, maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES })],
    peerDiscovery,
    connectionManager: {
      // a training swarm is small and wants every member reachable
      maxConnections: 512
    },
    // never below libp2p's own 5 s: a short member timeout (tests) must not drop connections sooner than before
    ...(init.minPingTimeoutMs !== undefined ? { connectionMonitor: { pingTimeout: { minTimeout: Math.max(5_000, init.minPingTimeoutMs) } } } : {}),
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        floodPublish: true,
        fallbackToFloodsub: false,
        maxInboundDataLength: MAX_GOSSIP_BYTES,
        maxInboundStreams: MAX_GOSSIP_STREAMS,
        maxOutboundStreams: MAX_GOSSIP_STREAMS,
        scoreParams: peerScoreParams(penalty),
        scoreThresholds: PEER_SCORE_THRESHOLDS
      })
    }
  })
  const network = new Network(node as unknown as Libp2p<Services>, init.logger, security, allow, penalty)
  network.metricsRegistry = metricsRegistry
  return network
}
