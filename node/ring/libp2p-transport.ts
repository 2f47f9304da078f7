/**
 * The ring's frames over libp2p streams (`/peer/allreduce/1.0.0`): one stream per neighbour and direction,
 * opened with `dialProtocol` on first use and kept open across rounds; accepted with `handle`, bounded per
 * connection. Streams are one-way: the dialer only writes, the listener only reads.
 */
import type { IncomingStreamData, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { pushable } from 'it-pushable'
import type { Pushable } from 'it-pushable'
import {
  DIAL_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, NotStartedError, PROTOCOL, SEND_HIGH_WATER_BYTES, StreamClosedError,
  encodeLengthPrefix
} from '../../protocols/allreduce/index.ts'
import { InboundRegistry, StreamInboundChannel, raceAbort, timeoutSignal } from './transport.ts'
import type { InboundChannel, OutboundChannel, RingTransport } from './transport.ts'

export interface Libp2pRingTransportOptions {
  /** Protocol id to handle and dial (default `/peer/allreduce/1.0.0`). */
  protocol?: string
  /** Inbound streams of this protocol per connection (default MAX_INBOUND_STREAMS). */
  maxInboundStreams?: number
  /** Outbound streams of this protocol per connection (default MAX_OUTBOUND_STREAMS). */
  maxOutboundStreams?: number
  /** Bytes queued per outbound stream before `send` waits (default SEND_HIGH_WATER_BYTES). */
  highWaterBytes?: number
  /**
   * Use relayed (limited) connections too (default false: a relay's byte and time limits would cut a round off
   * mid-way, so the ring insists on a direct connection).
   */
  runOnLimitedConnection?: boolean
}

/** The part of a libp2p node the transport uses. */
export type RingLibp2p = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>

/** Concatenates a frame's parts behind its length prefix. A copy: the muxer and noise keep references to what they are given until they have encrypted it, and the vector must be free to change once a round returns. */
function frameBytes (parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const part of parts) length += part.byteLength
  const prefix = encodeLengthPrefix(length)
  // Every byte is written below: no need to zero it first (allocUnsafe does not, and large sizes are not pooled).
  const out = Buffer.allocUnsafe(prefix.byteLength + length)
  out.set(prefix)
  let at = prefix.byteLength
  for (const part of parts) {
    out.set(part, at)
    at += part.byteLength
  }
  return out
}

class Libp2pOutboundChannel implements OutboundChannel {
  readonly peer: string
  readonly #stream: Stream
  readonly #queue: Pushable<Uint8Array>
  readonly #highWater: number
  readonly #closed: Promise<never>
  #failure: Error | undefined

  constructor (peer: string, stream: Stream, highWater: number) {
    this.peer = peer
    this.#stream = stream
    this.#highWater = highWater
    this.#queue = pushable<Uint8Array>()
    let markClosed: (err: Error) => void = () => {}
    this.#closed = new Promise<never>((_resolve, reject) => { markClosed = reject })
    this.#closed.catch(() => {})
    // This end never reads: the neighbour only listens on this stream.
    stream.closeRead().catch(() => {})
    stream.sink(this.#queue).then(
      () => { this.#fail(new StreamClosedError(`stream to ${peer} closed`), markClosed) },
      (err: Error) => { this.#fail(new StreamClosedError(`stream to ${peer} failed: ${err.message}`), markClosed) }
    )
  }

  get open (): boolean {
    return this.#failure === undefined && this.#stream.status === 'open'
  }

  async send (parts: Uint8Array[], signal: AbortSignal): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    try {
      this.#queue.push(frameBytes(parts))
    } catch (err) {
      // The stream ended the queue (it was reset) before its sink reported the failure.
      this.#failure ??= new StreamClosedError(`stream to ${this.peer} failed: ${(err as Error).message}`)
      throw this.#failure
    }
    if (this.#queue.readableLength > this.#highWater) {
      await raceAbort(Promise.race([this.#queue.onEmpty(), this.#closed]), signal)
    }
  }

  async flush (_signal: AbortSignal): Promise<void> {
    // Frames are copied on send: nothing of the caller's is referenced.
    if (this.#failure !== undefined) throw this.#failure
  }

  close (): void {
    if (this.#failure === undefined) this.#failure = new StreamClosedError(`stream to ${this.peer} closed locally`)
    this.#queue.end()
    this.#stream.abort(new StreamClosedError('closed locally'))
  }

  #fail (err: Error, markClosed: (err: Error) => void): void {
    this.#failure ??= err
    this.#queue.end()
    markClosed(this.#failure)
  }
}

class Libp2pRingTransport implements RingTransport {
  readonly #node: RingLibp2p
  readonly #protocol: string
  readonly #options: Required<Omit<Libp2pRingTransportOptions, 'protocol'>>
  readonly #inbound = new InboundRegistry()
  readonly #outbound = new Map<string, Libp2pOutboundChannel>()
  readonly #dialing = new Map<string, Promise<Libp2pOutboundChannel>>()
  #started = false

  constructor (node: RingLibp2p, options: Libp2pRingTransportOptions = {}) {
    this.#node = node
    this.#protocol = options.protocol ?? PROTOCOL
    this.#options = {
      maxInboundStreams: options.maxInboundStreams ?? MAX_INBOUND_STREAMS,
      maxOutboundStreams: options.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS,
      highWaterBytes: options.highWaterBytes ?? SEND_HIGH_WATER_BYTES,
      runOnLimitedConnection: options.runOnLimitedConnection ?? false
    }
  }

  async start (): Promise<void> {
    if (this.#started) return
    await this.#node.handle(this.#protocol, data => { this.#accept(data) }, {
      maxInboundStreams: this.#options.maxInboundStreams,
      maxOutboundStreams: this.#options.maxOutboundStreams,
      runOnLimitedConnection: this.#options.runOnLimitedConnection
    })
    this.#started = true
  }

  async stop (): Promise<void> {
    if (!this.#started) return
    this.#started = false
    await this.#node.unhandle(this.#protocol).catch(() => {})
    this.#inbound.closeAll()
    for (const channel of this.#outbound.values()) channel.close()
    this.#outbound.clear()
  }

  async outbound (peer: string, signal: AbortSignal): Promise<OutboundChannel> {
    if (!this.#started) throw new NotStartedError('ring transport is not started')
    const current = this.#outbound.get(peer)
    if (current?.open === true) return current
    if (current !== undefined) this.#outbound.delete(peer)
    // The dial belongs to the transport, not to the caller: a caller that gives up (its round aborted) leaves it
    // running for the next one (the abort notice, the next round) instead of killing it half-way.
    let dial = this.#dialing.get(peer)
    if (dial === undefined) {
      dial = this.#dial(peer, timeoutSignal(DIAL_TIMEOUT_MS, `opening a stream to ${peer}`)).finally(() => { this.#dialing.delete(peer) })
      dial.catch(() => {})
      this.#dialing.set(peer, dial)
    }
    return await raceAbort(dial, signal)
  }

  async inbound (peer: string, signal: AbortSignal): Promise<InboundChannel> {
    if (!this.#started) throw new NotStartedError('ring transport is not started')
    return await this.#inbound.get(peer, signal)
  }

  async #dial (peer: string, signal: AbortSignal): Promise<Libp2pOutboundChannel> {
    let stream: Stream
    try {
      stream = await this.#node.dialProtocol(peerIdFromString(peer), this.#protocol, {
        signal,
        maxOutboundStreams: this.#options.maxOutboundStreams,
        runOnLimitedConnection: this.#options.runOnLimitedConnection
      })
    } catch (err) {
      throw new StreamClosedError(`cannot open a stream to ${peer}: ${(err as Error).message}`)
    }
    const channel = new Libp2pOutboundChannel(peer, stream, this.#options.highWaterBytes)
    if (!this.#started) {
      channel.close()
      throw new NotStartedError('ring transport stopped while dialing')
    }
    this.#outbound.set(peer, channel)
    return channel
  }

  #accept ({ stream, connection }: IncomingStreamData): void {
    if (!this.#started) {
      stream.abort(new NotStartedError('ring transport is stopped'))
      return
    }
    // This end never writes: the neighbour only sends on this stream.
    stream.closeWrite().catch(() => {})
    const peer = connection.remotePeer.toString()
    const channel = new StreamInboundChannel(peer, stream.source, err => {
      if (err !== undefined) stream.abort(err)
      else stream.close().catch(() => {})
    })
    this.#inbound.add(channel)
  }
}

/**
 * A ring transport over the given libp2p node. `start()` registers the protocol handler; the caller must make
 * the members' addresses known to the node (its peer store, or live connections) before a round dials them.
 */
export function createLibp2pRingTransport (node: RingLibp2p, options?: Libp2pRingTransportOptions): RingTransport {
  return new Libp2pRingTransport(node, options)
}
