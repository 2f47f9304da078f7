/**
 * What the ring's two `node:net` transports share: a listener, one persistent socket per successor (dialled on
 * first use, reused by later rounds, dialled afresh once it failed; a dial outlives a caller that gives up),
 * inbound sockets per predecessor (newest wins), and the send path with its high-water mark. A subclass says how
 * a connection is opened (`connect`) and accepted (`accept`): the plain reference transport names its sender in
 * a first frame; the keyed one agrees a key over libp2p and seals every byte, and reads what its listener accepts
 * into one buffer of its own (`sharedReads`).
 */
import { Socket as NetSocket, createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { once } from 'node:events'
import { DIAL_TIMEOUT_MS, NotStartedError, SEND_HIGH_WATER_BYTES, StreamClosedError } from '../../protocols/allreduce/index.ts'
import { InboundRegistry, raceAbort, timeoutSignal } from './transport.ts'
import type { InboundChannel, OutboundChannel, RegisteredInboundChannel, RingTransport } from './transport.ts'

export interface TcpAddress {
  host: string
  port: number
}

/**
 * Turns one frame (its parts) into the buffers to write, in order: a length prefix and the parts themselves, or
 * a sealed record. May throw (the channel then fails).
 */
export type FrameWriter = (parts: Uint8Array[]) => Uint8Array[]

/**
 * Frees a buffer of its own at once rather than at the next garbage collection, when it is one (a whole
 * ArrayBuffer, larger than anything Buffer's pool hands out). The data path allocates a buffer per record on
 * each side (node:crypto has no in-place cipher) and one per socket read; V8 counts them as external memory
 * and, left to the collector, they force a full mark-compact of the whole heap every few MiB. Only for
 * buffers nothing else holds.
 */
export function freeNow (bytes: Uint8Array): void {
  const buffer = bytes.buffer as ArrayBuffer & { readonly detached?: boolean, transfer?: (length: number) => ArrayBuffer }
  if (bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength || bytes.byteLength <= FREE_MIN_BYTES) return
  if (buffer instanceof ArrayBuffer && buffer.detached === false && buffer.transfer !== undefined) buffer.transfer(0)
}
/** Above Buffer's pool (4 KiB) with room: smaller buffers are cheap to leave to the collector anyway. */
const FREE_MIN_BYTES = 16 * 1024

/**
 * Cuts a socket's bytes into frames: a FrameDecoder (length prefixes) or a RecordOpener (sealed records). `push`
 * returns the frames a chunk completes; it throws on bad input, or returns the good frames before a bad one and
 * sets `failure`. `end` throws if the stream stopped inside a frame.
 */
export interface FrameSource {
  push (chunk: Uint8Array): Uint8Array[]
  end (): void
  readonly failure?: Error | null
  /**
   * Where the socket may read the next bytes straight into (the rest of a frame being assembled), or null; after
   * it did, `wrote(bytes)` takes them as `push` would have (a RecordOpener: no copy of a record's body).
   */
  readTarget? (): Uint8Array | null
  wrote? (bytes: number): Uint8Array[]
}

interface PendingRead {
  resolve: (frame: Uint8Array | null) => void
  reject: (err: Error) => void
  signal: AbortSignal
  onAbort: () => void
}

/**
 * Frames from a socket, cut as the bytes arrive (in the socket's 'data' handler, no async iteration per chunk)
 * and handed straight to the waiting reader. Nothing is read ahead of the reader: the socket is paused while a
 * frame is queued and resumed only when a read finds none, so what a neighbour sends ahead waits in the socket
 * buffers and holds it back. A frame is the reader's until its next `read`.
 */
export class SocketInboundChannel implements RegisteredInboundChannel {
  #peer: string
  readonly #socket: Socket
  readonly #source: FrameSource
  readonly #onClose: (err?: Error) => void
  readonly #sourceError: (err: Error) => Error
  readonly #owned: boolean
  /** The frame the reader holds (until its next read), when it is ours to free. */
  #lent: Uint8Array | null = null
  readonly #frames: Uint8Array[] = []
  readonly #closeListeners: Array<() => void> = []
  #reader: PendingRead | null = null
  #ended = false
  #error: Error | undefined
  #closed = false

  /**
   * `onClose(err)` is called once the channel is closed, or failed (with the error): destroy the socket there.
   * `sourceError` maps what `source` throws to what the reader sees (default: as it is). With `owned`, the
   * source copies what it keeps of a chunk and makes each frame a buffer of its own (the keyed transport's
   * records): chunks are then freed once cut, frames once the reader is back for the next one.
   */
  constructor (peer: string, socket: Socket, source: FrameSource, onClose: (err?: Error) => void, init: { sourceError?: (err: Error) => Error, owned?: boolean } = {}) {
    this.#peer = peer
    this.#socket = socket
    this.#source = source
    this.#onClose = onClose
    this.#sourceError = init.sourceError ?? (err => err)
    this.#owned = init.owned === true
    const feed = sharedReadFeeds.get(socket)
    if (feed !== undefined) {
      // The chunk is a view of the transport's read buffer, good until this returns: only a source that copies
      // what it keeps may read from it.
      if (!this.#owned) throw new Error('a socket that reads into a shared buffer needs a source that copies what it keeps')
      feed.push = chunk => { this.#onData(chunk, false) }
      const source = this.#source
      if (source.readTarget !== undefined && source.wrote !== undefined) {
        const wrote = source.wrote.bind(source)
        feed.target = () => this.open ? source.readTarget?.() ?? null : null
        feed.wrote = bytes => { this.#took(() => wrote(bytes)) }
      }
    } else {
      socket.on('data', (chunk: Buffer) => { this.#onData(chunk, true) })
    }
    socket.on('end', () => {
      try {
        this.#source.end()
        this.#settle()
      } catch (err) {
        this.#settle(this.#sourceError(err as Error))
      }
    })
    socket.on('error', err => { this.#settle(new StreamClosedError(`stream from ${this.#peer} failed: ${err.message}`)) })
    socket.on('close', () => { this.#settle(new StreamClosedError(`stream from ${this.#peer} closed`)) })
  }

  get peer (): string {
    return this.#peer
  }

  /** Names the sender, for transports that learn it from the stream's first frame (before the channel is registered). */
  identify (peer: string): void {
    this.#peer = peer
  }

  get open (): boolean {
    return !this.#closed && !this.#ended && this.#error === undefined
  }

  onClosed (listener: () => void): void {
    if (!this.open) listener()
    else this.#closeListeners.push(listener)
  }

  read (signal: AbortSignal): Promise<Uint8Array | null> {
    if (this.#lent !== null) {
      freeNow(this.#lent)
      this.#lent = null
    }
    const frame = this.#frames.shift()
    if (frame !== undefined) return Promise.resolve(this.#lend(frame))
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#ended || this.#closed) return Promise.resolve(null)
    if (signal.aborted) return Promise.reject(signal.reason)
    if (this.#reader !== null) return Promise.reject(new Error('one read at a time'))
    return new Promise<Uint8Array | null>((resolve, reject) => {
      const onAbort = (): void => {
        this.#reader = null
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#reader = { resolve, reject, signal, onAbort }
      // The previous frame is the reader's no more: take the next bytes.
      this.#socket.resume()
    })
  }

  unread (frame: Uint8Array): void {
    if (frame === this.#lent) this.#lent = null
    this.#frames.unshift(frame)
  }

  #lend (frame: Uint8Array): Uint8Array {
    if (this.#owned) this.#lent = frame
    return frame
  }

  close (err?: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#frames.length = 0
    this.#notifyClosed()
    this.#wake()
    this.#onClose(err)
  }

  /** `ownChunk`: the chunk is a buffer of its own, which node:net will not reuse (free it once cut). */
  #onData (chunk: Uint8Array, ownChunk: boolean): void {
    this.#took(() => this.#source.push(chunk))
    if (this.#owned && ownChunk) freeNow(chunk)
  }

  /** Queues the frames `cut` returns (the source cutting what arrived), or settles with what it throws. */
  #took (cut: () => Uint8Array[]): void {
    if (!this.open) return
    let frames: Uint8Array[]
    try {
      frames = cut()
    } catch (err) {
      this.#settle(this.#sourceError(err as Error))
      return
    }
    for (const frame of frames) this.#frames.push(frame)
    // Frames that came before a bad one are still the sender's: they are read first, then the error.
    const failure = this.#source.failure
    if (failure != null) this.#settle(this.#sourceError(failure))
    else if (this.#frames.length > (this.#reader === null ? 0 : 1)) this.#socket.pause()
    this.#wake()
  }

  /** Hands the waiting reader a frame, the error or the end, whichever is there. */
  #wake (): void {
    const reader = this.#reader
    if (reader === null) return
    const frame = this.#frames.shift()
    if (frame === undefined && this.open) return
    this.#reader = null
    reader.signal.removeEventListener('abort', reader.onAbort)
    if (frame !== undefined) reader.resolve(this.#lend(frame))
    else if (this.#error !== undefined) reader.reject(this.#error)
    else reader.resolve(null)
  }

  #settle (err?: Error): void {
    if (this.#ended || this.#error !== undefined || this.#closed) return
    if (err !== undefined) this.#error = err
    else this.#ended = true
    this.#notifyClosed()
    this.#wake()
    if (err !== undefined) this.#onClose(err)
  }

  #notifyClosed (): void {
    for (const listener of this.#closeListeners.splice(0)) listener()
  }
}

/**
 * Where a socket that reads into a shared buffer hands what it read (its inbound channel sets these): `push` a
 * chunk of the shared buffer; or, where `target` gave a buffer of the channel's own to read into, `wrote` its
 * byte count.
 */
interface SharedReadFeed {
  push: (chunk: Uint8Array) => void
  target: () => Uint8Array | null
  wrote: (bytes: number) => void
}
const sharedReadFeeds = new WeakMap<Socket, SharedReadFeed>()

/**
 * An accepted socket made to read into `buffer` (node:net's `onread`) rather than into a new 64 KiB buffer per
 * read. Receiving 1 GiB over loopback then took 143-164 ms of CPU, against 240-307 ms with each read's buffer
 * freed at once (as the inbound channel frees them) and 480-520 ms left to the collector: the kernel copies into
 * memory that is already mapped and in cache, and nothing is allocated per read. node:net gives `onread` only to
 * sockets it is asked to construct, never to those a server accepts; so the server accepts paused
 * (`pauseOnConnect`), and the socket's handle moves into a Socket constructed with `onread`, as the server itself
 * constructs one around a handle it accepts. Where the accepted socket has no handle to move (another Node), it
 * is returned as it is and reads as before. The chunk passed on is good until the callback returns (one thread:
 * no other read fills the buffer meanwhile), so every socket of a transport can share one buffer.
 */
export function readingInto (accepted: Socket, buffer: Uint8Array): Socket {
  const raw = accepted as unknown as { _handle?: object | null }
  const handle = raw._handle
  if (handle == null) {
    accepted.resume()
    return accepted
  }
  raw._handle = null
  // Closes nothing (the handle is gone): it only tells the server this Socket is over.
  accepted.destroy()
  // Bytes before an inbound channel took the socket would be lost: say so, loudly.
  const early = (): void => { socket.destroy(new Error('data before the inbound channel was set up')) }
  const feed: SharedReadFeed = { push: early, target: () => null, wrote: early }
  const onread = {
    // asked before each read: the channel's own buffer to read into, if it has one ready, else the shared one
    buffer: (): Uint8Array => feed.target() ?? buffer,
    callback: (bytes: number, into: Uint8Array): void => {
      if (into === buffer) feed.push(buffer.subarray(0, bytes))
      else feed.wrote(bytes)
    }
  }
  const socket = new NetSocket({ handle, readable: true, writable: true, onread } as unknown as ConstructorParameters<typeof NetSocket>[0])
  // Nothing is read before the inbound channel asks (as a plain accepted socket, it starts paused here).
  socket.pause()
  sharedReadFeeds.set(socket, feed)
  return socket
}

/** One socket to a successor; the listener never writes on it. */
export class SocketOutboundChannel implements OutboundChannel {
  readonly peer: string
  readonly #socket: Socket
  readonly #write: FrameWriter
  readonly #highWater: number
  readonly #closed: Promise<never>
  #failure: Error | undefined
  /** Frames written and not yet handed to the kernel, and the flushes waiting for none to be left. */
  #unwritten = 0
  readonly #flushes: Array<() => void> = []
  readonly #ownsWritten: boolean
  /** With ownsWritten: the buffers of each frame not yet handed to the kernel, oldest first. */
  readonly #inFlight: Uint8Array[][] = []
  readonly #written = (err?: Error | null): void => {
    // A failed write fails the socket ('error'): the flushes waiting then reject through #closed.
    if (err != null) return
    if (this.#ownsWritten) for (const buffer of this.#inFlight.shift() ?? []) freeNow(buffer)
    if (--this.#unwritten === 0) for (const resolve of this.#flushes.splice(0)) resolve()
  }

  /**
   * With `ownsWritten`, the buffers `write` returns are its own (sealed records): each is freed once the kernel
   * has it (see freeNow).
   */
  constructor (peer: string, socket: Socket, write: FrameWriter, highWaterBytes = SEND_HIGH_WATER_BYTES, init: { ownsWritten?: boolean } = {}) {
    this.#ownsWritten = init.ownsWritten === true
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
    if (this.#unwritten === 0) return
    await raceAbort(Promise.race([new Promise<void>(resolve => { this.#flushes.push(resolve) }), this.#closed]), signal)
  }

  close (): void {
    this.#failure ??= new StreamClosedError(`socket to ${this.peer} closed locally`)
    this.#socket.destroy()
  }

  /** Writes corked (one writev), counting the frame until its last buffer has been handed to the kernel. */
  #writeAll (buffers: Uint8Array[]): void {
    const socket = this.#socket
    socket.cork()
    for (let i = 0; i < buffers.length - 1; i++) socket.write(buffers[i])
    this.#unwritten++
    if (this.#ownsWritten) this.#inFlight.push(buffers)
    socket.write(buffers[buffers.length - 1], this.#written)
    socket.uncork()
  }
}

/** The shared body of the socket transports; see the file's header. */
export abstract class SocketRingTransport implements RingTransport {
  readonly #listen: TcpAddress
  readonly #inbound = new InboundRegistry<SocketInboundChannel>()
  readonly #outbound = new Map<string, SocketOutboundChannel>()
  readonly #dialing = new Map<string, Promise<SocketOutboundChannel>>()
  readonly #sockets = new Set<Socket>()
  /** The buffer every accepted socket reads into (`sharedReads`), or null: node:net's own buffer per read. */
  readonly #readBuffer: Uint8Array | null
  #server: Server | undefined

  /**
   * `sharedReads`: accepted sockets read into one buffer of that many bytes (see `readingInto`), for a subclass
   * whose inbound sources copy what they keep (`SocketInboundChannel`'s `owned`).
   */
  constructor (listen: Partial<TcpAddress> = {}, init: { sharedReads?: number } = {}) {
    this.#listen = { host: listen.host ?? '127.0.0.1', port: listen.port ?? 0 }
    this.#readBuffer = init.sharedReads === undefined ? null : Buffer.allocUnsafe(init.sharedReads)
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
    const readBuffer = this.#readBuffer
    const server = createServer({ pauseOnConnect: readBuffer !== null }, accepted => {
      const socket = readBuffer === null ? accepted : readingInto(accepted, readBuffer)
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
  protected register (channel: SocketInboundChannel): void {
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
