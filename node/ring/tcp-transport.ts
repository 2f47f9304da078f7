/**
 * The ring's frames over plain `node:net` sockets: the benchmark's reference for what the ring costs without
 * encryption and muxing. One socket per neighbour and direction, kept open across rounds. Nothing is
 * authenticated: the first frame of a connection names its sender (an ident frame). Use on trusted networks only.
 */
import type { Socket } from 'node:net'
import {
  FrameDecoder, IDENT_TIMEOUT_MS, MAX_FRAME_BYTES, StreamClosedError, decodeFrame, encodeIdent, encodeLengthPrefix
} from '../../protocols/allreduce/index.ts'
import { SocketInboundChannel, SocketOutboundChannel, SocketRingTransport } from './socket-transport.ts'
import type { FrameWriter, TcpAddress } from './socket-transport.ts'
import { timeoutSignal } from './transport.ts'
import type { RingTransport } from './transport.ts'

export type { TcpAddress }

export interface TcpRingTransportOptions {
  /** This member's id, sent as the first frame of each connection it opens. */
  self: string
  /** Where to listen (default 127.0.0.1, port 0: any free port; see `address()` once started). */
  listen?: Partial<TcpAddress>
  /** Where a member listens; asked at dial time, so the map may be filled after start. */
  resolve: (peer: string) => TcpAddress | undefined
  /** Bytes queued per socket before `send` waits (default SEND_HIGH_WATER_BYTES). */
  highWaterBytes?: number
}

export interface TcpRingTransport extends RingTransport {
  /** The address the listener is bound to (after `start()`). */
  address (): TcpAddress
}

/** A frame as the parts themselves behind a length prefix: written without a copy. */
const lengthPrefixed: FrameWriter = parts => {
  let length = 0
  for (const part of parts) length += part.byteLength
  return [encodeLengthPrefix(length), ...parts]
}

class TcpTransport extends SocketRingTransport implements TcpRingTransport {
  readonly #options: TcpRingTransportOptions

  constructor (options: TcpRingTransportOptions) {
    super(options.listen)
    this.#options = options
  }

  protected async connect (peer: string, signal: AbortSignal): Promise<SocketOutboundChannel> {
    const address = this.#options.resolve(peer)
    if (address === undefined) throw new StreamClosedError(`no address for ${peer}`)
    const socket = await this.connectSocket(peer, address, signal)
    const channel = new SocketOutboundChannel(peer, socket, lengthPrefixed, this.#options.highWaterBytes)
    await channel.send([encodeIdent({ peer: this.#options.self })], signal)
    return channel
  }

  protected accept (socket: Socket): void {
    const channel = new SocketInboundChannel('(unidentified)', socket, new FrameDecoder(MAX_FRAME_BYTES), err => {
      if (err !== undefined) socket.destroy(err)
      else socket.destroy()
    })
    const signal = timeoutSignal(IDENT_TIMEOUT_MS, 'the ident frame')
    channel.read(signal).then(frame => {
      const ident = frame === null ? null : decodeFrame(frame)
      if (ident?.type !== 'ident') throw new StreamClosedError('connection did not start with an ident frame')
      channel.identify(ident.peer)
      this.register(channel)
    }).catch(() => { socket.destroy() })
  }
}

export function createTcpRingTransport (options: TcpRingTransportOptions): TcpRingTransport {
  return new TcpTransport(options)
}
