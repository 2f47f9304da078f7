/**
 * The libp2p host: TCP, noise, yamux, identify, ping, bootstrap from `--join`,
 * mDNS on the LAN, and gossipsub with signed messages. Turns libp2p's events
 * into the few the peer needs, and offers dial/handle/publish/subscribe.
 *
 * @example
 * const net = await startNetwork({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger })
 * net.subscribe(topic, (from, data) => { … })
 */
import { EventEmitter } from 'node:events'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { bootstrap } from '@libp2p/bootstrap'
import { mdns } from '@libp2p/mdns'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import type { GossipSub } from '@chainsafe/libp2p-gossipsub'
import { TopicValidatorResult } from '@libp2p/interface'
import type { PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'

export { loadOrCreateKey, KEY_FILE } from './key.ts'
export { TopicValidatorResult }
export type { Libp2p, PeerId, Stream }

/** Gossip messages are manifest deltas and round announcements: small. 1 MiB bounds what a peer may send. */
export const MAX_GOSSIP_BYTES = 1024 * 1024

/** yamux's per-stream receive window: 256 KiB by default; the ring sends blocks of up to 1 MiB. */
const STREAM_WINDOW_BYTES = 4 * 1024 * 1024
const MAX_STREAM_WINDOW_BYTES = 16 * 1024 * 1024

export interface NetworkInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on (`/ip4/0.0.0.0/tcp/4001`; port 0 picks a free port). */
  listen: string[]
  /** Multiaddrs with /p2p/<id> of peers to join through. */
  join: string[]
  mdns: boolean
  logger: Logger
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

export class Network extends EventEmitter<NetworkEvents> {
  readonly node: Libp2p<Services>
  readonly peerId: string
  private readonly logger: Logger
  private readonly handlers = new Map<string, GossipHandler>()

  constructor (node: Libp2p<Services>, logger: Logger) {
    super()
    this.node = node
    this.peerId = node.peerId.toString()
    this.logger = logger
    node.addEventListener('peer:connect', evt => { this.emit('peer.connected', evt.detail.toString()) })
    node.addEventListener('peer:disconnect', evt => { this.emit('peer.disconnected', evt.detail.toString()) })
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

  /** Addresses others can dial, each with /p2p/<id>. */
  addresses (): string[] {
    return this.node.getMultiaddrs().map(ma => ma.toString())
  }

  connectedPeers (): Array<{ peerId: string, addresses: string[] }> {
    const byPeer = new Map<string, string[]>()
    for (const conn of this.node.getConnections()) {
      const id = conn.remotePeer.toString()
      const list = byPeer.get(id) ?? []
      list.push(conn.remoteAddr.toString())
      byPeer.set(id, list)
    }
    return [...byPeer].map(([peerId, addresses]) => ({ peerId, addresses }))
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
   * delivered or forwarded: false rejects it (gossipsub then penalises the
   * peer that sent it).
   */
  subscribe (topic: string, handler: GossipHandler, validate: (from: string, data: Uint8Array) => boolean): void {
    const pubsub = this.node.services.pubsub
    pubsub.topicValidators.set(topic, (_propagationSource, msg) => {
      // StrictSign: every message names and is signed by its author
      if (msg.type !== 'signed' || msg.data.byteLength > MAX_GOSSIP_BYTES) return TopicValidatorResult.Reject
      try {
        return validate(msg.from.toString(), msg.data) ? TopicValidatorResult.Accept : TopicValidatorResult.Reject
      } catch {
        return TopicValidatorResult.Reject
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

  /** Gossipsub's score of a peer (negative: it has misbehaved). */
  gossipScore (peer: string): number {
    return this.node.services.pubsub.getScore(peer)
  }

  async stop (): Promise<void> {
    await this.node.stop()
  }
}

export async function startNetwork (init: NetworkInit): Promise<Network> {
  const peerDiscovery = []
  if (init.join.length > 0) peerDiscovery.push(bootstrap({ list: init.join, timeout: 0 }))
  if (init.mdns) peerDiscovery.push(mdns({ interval: 2000 }))
  const node = await createLibp2p({
    privateKey: init.privateKey,
    addresses: { listen: init.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // yamux grows a stream's window only when it measures a round-trip time above 0 ms, which loopback and
    // fast LANs never show: start it large enough for the all-reduce's blocks
    streamMuxers: [yamux({ initialStreamWindowSize: STREAM_WINDOW_BYTES, maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES })],
    peerDiscovery,
    connectionManager: {
      // a training swarm is small and wants every member reachable
      maxConnections: 512
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        floodPublish: true,
        fallbackToFloodsub: false,
        maxInboundDataLength: MAX_GOSSIP_BYTES
      })
    }
  })
  return new Network(node as unknown as Libp2p<Services>, init.logger)
}
