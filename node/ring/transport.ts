/**
 * How frames reach a neighbour, kept apart from the data path: the byte loop sees only frame channels. A
 * transport keeps one persistent outbound channel per peer (opened on first use, reused by later rounds, opened
 * afresh once it has failed) and accepts inbound channels from peers, newest wins.
 *
 * Inbound channels are per peer, not per round: rounds are told apart by the hello frame that opens each
 * round's part of the stream, so one stream serves every round for as long as it lives.
 */
import { FrameDecoder, InvalidMessageError, StreamClosedError, TimeoutError } from '../../protocols/allreduce/index.ts'

export interface OutboundChannel {
  readonly peer: string
  /** False once the channel failed or was closed; the transport then opens a new one on the next `outbound()`. */
  readonly open: boolean
  /**
   * Queues one frame: the parts, concatenated, behind a length prefix. Resolves once the channel has room for
   * more; rejects with StreamClosedError if the channel failed. The parts may still be read until `flush()`
   * resolves (the TCP channel writes them without a copy): do not change them before.
   */
  send (parts: Uint8Array[], signal: AbortSignal): Promise<void>
  /** Resolves once no byte of any frame sent so far is referenced by the channel any more. */
  flush (signal: AbortSignal): Promise<void>
  close (): void
}

export interface InboundChannel {
  readonly peer: string
  readonly open: boolean
  /**
   * The next frame, or null when the stream has ended cleanly between frames. Throws InvalidMessageError on
   * bad framing (kind `truncated` when the stream ended inside a frame), StreamClosedError when the stream was
   * reset, and the signal's reason when aborted; an aborted read loses nothing (the next read gets the frame).
   */
  read (signal: AbortSignal): Promise<Uint8Array | null>
  /** Puts a frame back: the next read returns it. */
  unread (frame: Uint8Array): void
  close (): void
}

export interface RingTransport {
  /** Starts accepting inbound channels (registers the protocol handler / opens the listener). */
  start (): Promise<void>
  /** Stops accepting and closes every channel. */
  stop (): Promise<void>
  /** The open outbound channel to `peer`, or a new one. Rejects with StreamClosedError if it cannot be opened. */
  outbound (peer: string, signal: AbortSignal): Promise<OutboundChannel>
  /** The newest open inbound channel from `peer`; waits (until the signal aborts) for one to arrive. */
  inbound (peer: string, signal: AbortSignal): Promise<InboundChannel>
  /**
   * The block size this transport carries best, where it differs from DEFAULT_BLOCK_BYTES (a ring built without
   * `blockBytes` uses it). Receivers accept any block up to MAX_BLOCK_BYTES, so members may differ.
   */
  readonly blockBytes?: number
}

/** Waits for a promise or the signal, whichever settles first; the promise keeps running either way. */
export function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      value => { signal.removeEventListener('abort', onAbort); resolve(value) },
      err => { signal.removeEventListener('abort', onAbort); reject(err) }
    )
  })
}

/** A signal that aborts with a TimeoutError after `ms` (for waits the transport owns, such as dials). */
export function timeoutSignal (ms: number, what: string): AbortSignal {
  const controller = new AbortController()
  setTimeout(() => { controller.abort(new TimeoutError(`${what} took longer than ${ms} ms`)) }, ms).unref()
  return controller.signal
}

/**
 * Frames from a byte stream, pulled on demand: nothing is read ahead of the reader, so what a neighbour sends for
 * a round this member has not started yet waits in the transport's own flow-control window (yamux's stream
 * window, the socket buffers) and the sender is slowed down, not buffered without bound.
 */
export class StreamInboundChannel implements InboundChannel {
  #peer: string
  readonly #iterator: AsyncIterator<Uint8Array | Iterable<Uint8Array>>
  /** Null when the source yields whole frames (records of a transport that frames them itself). */
  readonly #decoder: FrameDecoder | null
  readonly #frames: Uint8Array[] = []
  readonly #onClose: (err?: Error) => void
  readonly #closeListeners: Array<() => void> = []
  #pending: Promise<IteratorResult<Uint8Array | Iterable<Uint8Array>>> | undefined
  #ended = false
  #error: Error | undefined
  #closed = false

  /**
   * `source` yields bytes to be cut into length-prefixed frames of at most `init.maxFrameBytes`, or, with
   * `init.wholeFrames`, one whole frame per value (the source bounds and authenticates them itself).
   */
  constructor (peer: string, source: AsyncIterable<Uint8Array | Iterable<Uint8Array>>, onClose: (err?: Error) => void, init: { maxFrameBytes?: number, wholeFrames?: boolean } = {}) {
    this.#peer = peer
    this.#iterator = source[Symbol.asyncIterator]()
    this.#decoder = init.wholeFrames === true ? null : new FrameDecoder(init.maxFrameBytes)
    this.#onClose = onClose
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

  /** Called once when the channel stops being open (ended, failed, closed). */
  onClosed (listener: () => void): void {
    if (!this.open) listener()
    else this.#closeListeners.push(listener)
  }

  async read (signal: AbortSignal): Promise<Uint8Array | null> {
    while (true) {
      const frame = this.#frames.shift()
      if (frame !== undefined) return frame
      if (this.#error !== undefined) throw this.#error
      if (this.#ended || this.#closed) return null
      if (this.#pending === undefined) {
        this.#pending = this.#iterator.next()
        this.#pending.catch(() => {})
      }
      let result: IteratorResult<Uint8Array | Iterable<Uint8Array>>
      try {
        result = await raceAbort(this.#pending, signal)
      } catch (err) {
        if (signal.aborted && err === signal.reason) throw err
        this.#pending = undefined
        this.#settle(new StreamClosedError(`stream from ${this.#peer} failed: ${(err as Error)?.message ?? err}`))
        continue
      }
      this.#pending = undefined
      try {
        if (result.done === true) {
          this.#decoder?.end()
          this.#settle()
          continue
        }
        const value = result.value
        const decoder = this.#decoder
        for (const part of value instanceof Uint8Array ? [value] : value) {
          if (decoder === null) this.#frames.push(part)
          else for (const f of decoder.push(part)) this.#frames.push(f)
        }
      } catch (err) {
        if (!(err instanceof InvalidMessageError)) throw err
        this.#settle(err)
      }
    }
  }

  unread (frame: Uint8Array): void {
    this.#frames.unshift(frame)
  }

  close (err?: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#frames.length = 0
    this.#notifyClosed()
    this.#onClose(err)
  }

  #settle (err?: Error): void {
    if (err !== undefined) this.#error = err
    else this.#ended = true
    this.#notifyClosed()
    if (err !== undefined) this.#onClose(err)
  }

  #notifyClosed (): void {
    for (const listener of this.#closeListeners.splice(0)) listener()
  }
}

/** An inbound channel a transport keeps in its registry: it says when it closes, and can be closed with a reason. */
export interface RegisteredInboundChannel extends InboundChannel {
  onClosed (listener: () => void): void
  close (err?: Error): void
}

/** The newest open inbound channel per peer, and the readers waiting for one. */
export class InboundRegistry<C extends RegisteredInboundChannel = StreamInboundChannel> {
  readonly #channels = new Map<string, C>()
  readonly #waiters = new Map<string, Set<(channel: C) => void>>()

  /** Registers a new channel from its peer; an older one from the same peer is closed (the peer gave up on it). */
  add (channel: C): void {
    const previous = this.#channels.get(channel.peer)
    this.#channels.set(channel.peer, channel)
    channel.onClosed(() => {
      if (this.#channels.get(channel.peer) === channel) this.#channels.delete(channel.peer)
    })
    if (previous !== undefined && previous !== channel) previous.close(new StreamClosedError('replaced by a newer stream'))
    const waiters = this.#waiters.get(channel.peer)
    if (waiters !== undefined && channel.open) {
      this.#waiters.delete(channel.peer)
      for (const wake of waiters) wake(channel)
    }
  }

  get (peer: string, signal: AbortSignal): Promise<C> {
    const current = this.#channels.get(peer)
    if (current?.open === true) return Promise.resolve(current)
    if (signal.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      let waiters = this.#waiters.get(peer)
      if (waiters === undefined) {
        waiters = new Set()
        this.#waiters.set(peer, waiters)
      }
      const set = waiters
      const wake = (channel: C): void => {
        signal.removeEventListener('abort', onAbort)
        resolve(channel)
      }
      const onAbort = (): void => {
        set.delete(wake)
        reject(signal.reason)
      }
      set.add(wake)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  closeAll (): void {
    for (const channel of [...this.#channels.values()]) channel.close(new StreamClosedError('transport stopped'))
    this.#channels.clear()
  }
}
