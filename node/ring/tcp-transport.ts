/**
 * The ring's frames over plain `node:net` sockets: the benchmark's reference for what the ring costs without
 * encryption and muxing. One socket per neighbour and direction, kept open across rounds. Nothing is
 * authenticated: the first frame of a connection names its sender (an ident frame). Use on trusted networks only.
 */
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { once } from 'node:events'
import {
  DIAL_TIMEOUT_MS, IDENT_TIMEOUT_MS, MAX_FRAME_BYTES, NotStartedError, SEND_HIGH_WATER_BYTES, StreamClosedError, decodeFrame,
  encodeIdent, encodeLengthPrefix
} from '../../protocols/allreduce/index.ts'
import { InboundRegistry, StreamInboundChannel, raceAbort, timeoutSignal } from './transport.ts'
import type { InboundChannel, OutboundChannel, RingTransport } from './transport.ts'

export interface TcpAddress {
  host: string
  port: number
}

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

class TcpOutboundChannel implements OutboundChannel {
  readonly peer: string
  readonly #socket: Socket
  readonly #closed: Promise<never>
  #failure: Error | undefined
  /** Settles when the last write so far has been handed to the kernel. */
  #lastWrite: Promise<void> = Promise.resolve()

  constructor (peer: string, socket: Socket) {
    this.peer = peer
    this.#socket = socket
    let markClosed: (err: Error) => void = () => {}
    this.#closed = new Promise<never>((_resolve, reject) => { markClosed = reject })
    this.#closed.catch(() => {})
    const fail = (err?: Error): void => {
      this.#failure ??= new StreamClosedError(`socket to ${peer} ${err === undefined ? 'closed' : `failed: ${err.message}`}`)
      markClosed(this.#failure)
    }
    socket.on('error', fail)
    socket.on('close', () => { fail() })
    // Nothing comes back on this socket; reading keeps 'close' reliable.
    socket.on('data', () => {})
  }

  get open (): boolean {
    return this.#failure === undefined && !this.#socket.destroyed
  }

  async send (parts: Uint8Array[], signal: AbortSignal): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    let length = 0
    for (const part of parts) length += part.byteLength
    const socket = this.#socket
    socket.cork()
    socket.write(encodeLengthPrefix(length))
    for (let i = 0; i < parts.length - 1; i++) socket.write(parts[i])
    this.#lastWrite = new Promise<void>((resolve, reject) => {
      socket.write(parts[parts.length - 1], err => { if (err != null) reject(err); else resolve() })
    })
    this.#lastWrite.catch(() => {})
    socket.uncork()
    if (socket.writableLength > SEND_HIGH_WATER_BYTES || socket.writableNeedDrain) {
      await raceAbort(Promise.race([once(socket, 'drain').then(() => {}), this.#closed]), signal)
    }
  }

  async flush (signal: AbortSignal): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    await raceAbort(Promise.race([this.#lastWrite, this.#closed]), signal)
  }

  close (): void {
    this.#failure ??= new StreamClosedError(`socket to ${this.peer} closed locally`)
    this.#socket.destroy()
  }
}

class TcpTransport implements TcpRingTransport {
  readonly #options: TcpRingTransportOptions
  readonly #inbound = new InboundRegistry()
  readonly #outbound = new Map<string, TcpOutboundChannel>()
  readonly #dialing = new Map<string, Promise<TcpOutboundChannel>>()
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined

  constructor (options: TcpRingTransportOptions) {
    this.#options = options
  }

  address (): TcpAddress {
    const address = this.#server?.address()
    if (address == null || typeof address === 'string') throw new NotStartedError('tcp ring transport is not listening')
    return { host: address.address, port: address.port }
  }

  async start (): Promise<void> {
    if (this.#server !== undefined) return
    const server = createServer(socket => { this.#accept(socket) })
    server.listen(this.#options.listen?.port ?? 0, this.#options.listen?.host ?? '127.0.0.1')
    await once(server, 'listening')
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    this.#inbound.closeAll()
    for (const channel of this.#outbound.values()) channel.close()
    this.#outbound.clear()
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  }

  async outbound (peer: string, signal: AbortSignal): Promise<OutboundChannel> {
    if (this.#server === undefined) throw new NotStartedError('tcp ring transport is not started')
    const current = this.#outbound.get(peer)
    if (current?.open === true) return current
    this.#outbound.delete(peer)
    // As over libp2p: the connection attempt outlives a caller that gives up, for the next one to use.
    let dial = this.#dialing.get(peer)
    if (dial === undefined) {
      dial = this.#dial(peer, timeoutSignal(DIAL_TIMEOUT_MS, `connecting to ${peer}`)).finally(() => { this.#dialing.delete(peer) })
      dial.catch(() => {})
      this.#dialing.set(peer, dial)
    }
    return await raceAbort(dial, signal)
  }

  async #dial (peer: string, signal: AbortSignal): Promise<TcpOutboundChannel> {
    const address = this.#options.resolve(peer)
    if (address === undefined) throw new StreamClosedError(`no address for ${peer}`)
    const socket = createConnection({ host: address.host, port: address.port, noDelay: true })
    this.#track(socket)
    try {
      await raceAbort(Promise.race([
        once(socket, 'connect'),
        once(socket, 'error').then(([err]) => { throw err })
      ]), signal)
    } catch (err) {
      socket.destroy()
      throw new StreamClosedError(`cannot connect to ${peer}: ${(err as Error).message}`)
    }
    const channel = new TcpOutboundChannel(peer, socket)
    await channel.send([encodeIdent({ peer: this.#options.self })], signal)
    if (this.#server === undefined) {
      channel.close()
      throw new NotStartedError('tcp ring transport stopped while connecting')
    }
    this.#outbound.set(peer, channel)
    return channel
  }

  async inbound (peer: string, signal: AbortSignal): Promise<InboundChannel> {
    if (this.#server === undefined) throw new NotStartedError('tcp ring transport is not started')
    return await this.#inbound.get(peer, signal)
  }

  #track (socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => { this.#sockets.delete(socket) })
    socket.on('error', () => {})
  }

  #accept (socket: Socket): void {
    this.#track(socket)
    socket.setNoDelay(true)
    const channel = new StreamInboundChannel('(unidentified)', socket, err => {
      if (err !== undefined) socket.destroy(err)
      else socket.destroy()
    }, MAX_FRAME_BYTES)
    const signal = timeoutSignal(IDENT_TIMEOUT_MS, 'the ident frame')
    channel.read(signal).then(frame => {
      const ident = frame === null ? null : decodeFrame(frame)
      if (ident?.type !== 'ident') throw new StreamClosedError('connection did not start with an ident frame')
      channel.identify(ident.peer)
      this.#inbound.add(channel)
    }).catch(() => { socket.destroy() })
  }
}

export function createTcpRingTransport (options: TcpRingTransportOptions): TcpRingTransport {
  return new TcpTransport(options)
}
