/**
 * What the ring's two `node:net` transports share: a listener, one persistent socket per successor (dialled on
 * first use, reused by later rounds, dialled afresh once it failed; a dial outlives a caller that gives up),
 * inbound sockets per predecessor (newest wins), and the send path with its high-water mark. A subclass says how
 * a connection is opened (`connect`) and accepted (`accept`): the plain reference transport names its sender in
 * a first frame; the keyed one agrees a key over libp2p and seals every byte.
 */
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { once } from 'node:events'
import { DIAL_TIMEOUT_MS, NotStartedError, SEND_HIGH_WATER_BYTES, StreamClosedError } from '../../protocols/allreduce/index.ts'
import { InboundRegistry, raceAbort, timeoutSignal } from './transport.ts'
import type { InboundChannel, OutboundChannel, RingTransport, StreamInboundChannel } from './transport.ts'

export interface TcpAddress {
  host: string
  port: number
}

/**
 * Turns one frame (its parts) into the buffers to write, in order: a length prefix and the parts themselves, or
 * a sealed record. May throw (the channel then fails).
 */
export type FrameWriter = (parts: Uint8Array[]) => Uint8Array[]

/** One socket to a successor; the listener never writes on it. */
export class SocketOutboundChannel implements OutboundChannel {
  readonly peer: string
  readonly #socket: Socket
  readonly #write: FrameWriter
  readonly #highWater: number
  readonly #closed: Promise<never>
  #failure: Error | undefined
  /** Settles when the last write so far has been handed to the kernel. */
  #lastWrite: Promise<void> = Promise.resolve()

  constructor (peer: string, socket: Socket, write: FrameWriter, highWaterBytes = SEND_HIGH_WATER_BYTES) {
    this.peer = peer
    this.#socket = socket
    this.#write = write
    this.#highWater = highWaterBytes
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

  /** Writes buffers ahead of any frame (a preamble), without waiting. */
  writeRaw (buffers: Uint8Array[]): void {
    this.#writeAll(buffers)
  }

  async send (parts: Uint8Array[], signal: AbortSignal): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    let buffers: Uint8Array[]
    try {
      buffers = this.#write(parts)
    } catch (err) {
      this.#failure ??= new StreamClosedError(`socket to ${this.peer} failed: ${(err as Error).message}`)
      this.#socket.destroy()
      throw this.#failure
    }
    this.#writeAll(buffers)
    const socket = this.#socket
    if (socket.writableLength > this.#highWater || socket.writableNeedDrain) {
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

  /** Writes corked (one writev), remembering when the last buffer has been handed to the kernel. */
  #writeAll (buffers: Uint8Array[]): void {
    const socket = this.#socket
    socket.cork()
    for (let i = 0; i < buffers.length - 1; i++) socket.write(buffers[i])
    this.#lastWrite = new Promise<void>((resolve, reject) => {
      socket.write(buffers[buffers.length - 1], err => { if (err != null) reject(err); else resolve() })
    })
    this.#lastWrite.catch(() => {})
    socket.uncork()
  }
}

/** The shared body of the socket transports; see the file's header. */
export abstract class SocketRingTransport implements RingTransport {
  readonly #listen: TcpAddress
  readonly #inbound = new InboundRegistry()
  readonly #outbound = new Map<string, SocketOutboundChannel>()
  readonly #dialing = new Map<string, Promise<SocketOutboundChannel>>()
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined

  constructor (listen: Partial<TcpAddress> = {}) {
    this.#listen = { host: listen.host ?? '127.0.0.1', port: listen.port ?? 0 }
  }

  /** Opens a channel to `peer` (called once per dial; the base class dedupes and stores it). */
  protected abstract connect (peer: string, signal: AbortSignal): Promise<SocketOutboundChannel>
  /** Takes a new inbound socket; calls `register` once it knows who sent it, destroys it otherwise. */
  protected abstract accept (socket: Socket): void
  /** Called by start() once the listener is up (register protocol handlers here). */
  protected async onStart (): Promise<void> {}
  /** Called by stop() before the sockets are closed. */
  protected async onStop (): Promise<void> {}

  get started (): boolean {
    return this.#server !== undefined
  }

  /** The address the listener is bound to (after `start()`). */
  address (): TcpAddress {
    const address = this.#server?.address()
    if (address == null || typeof address === 'string') throw new NotStartedError('ring socket transport is not listening')
    return { host: address.address, port: address.port }
  }

  async start (): Promise<void> {
    if (this.#server !== undefined) return
    const server = createServer(socket => {
      this.track(socket)
      socket.setNoDelay(true)
      this.accept(socket)
    })
    server.listen(this.#listen.port, this.#listen.host)
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err })])
    this.#server = server
    try {
      await this.onStart()
    } catch (err) {
      this.#server = undefined
      server.close()
      throw err
    }
  }

  async stop (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    await this.onStop()
    this.#inbound.closeAll()
    for (const channel of this.#outbound.values()) channel.close()
    this.#outbound.clear()
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  }

  async outbound (peer: string, signal: AbortSignal): Promise<OutboundChannel> {
    if (this.#server === undefined) throw new NotStartedError('ring socket transport is not started')
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

  async inbound (peer: string, signal: AbortSignal): Promise<InboundChannel> {
    if (this.#server === undefined) throw new NotStartedError('ring socket transport is not started')
    return await this.#inbound.get(peer, signal)
  }

  /** Registers an inbound channel whose sender is known (newest per peer wins). */
  protected register (channel: StreamInboundChannel): void {
    if (this.#server === undefined) {
      channel.close(new StreamClosedError('transport stopped'))
      return
    }
    this.#inbound.add(channel)
  }

  /** Connects a socket (tracked, no Nagle); StreamClosedError if it cannot. */
  protected async connectSocket (peer: string, address: TcpAddress, signal: AbortSignal): Promise<Socket> {
    const socket = createConnection({ host: address.host, port: address.port, noDelay: true })
    this.track(socket)
    try {
      await raceAbort(Promise.race([
        once(socket, 'connect'),
        once(socket, 'error').then(([err]) => { throw err })
      ]), signal)
    } catch (err) {
      socket.destroy()
      throw new StreamClosedError(`cannot connect to ${peer} at ${address.host}:${address.port}: ${(err as Error).message}`)
    }
    return socket
  }

  protected track (socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => { this.#sockets.delete(socket) })
    socket.on('error', () => {})
  }

  async #dial (peer: string, signal: AbortSignal): Promise<SocketOutboundChannel> {
    const channel = await this.connect(peer, signal)
    if (this.#server === undefined) {
      channel.close()
      throw new NotStartedError('ring socket transport stopped while connecting')
    }
    this.#outbound.set(peer, channel)
    return channel
  }
}
