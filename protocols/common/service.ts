/**
 * The start/stop every protocol service shares: `start()` registers one protocol's stream handler with its
 * stream limits, `stop()` removes it, `isStarted` says which. A service that serves one protocol extends
 * `ProtocolService` (which holds a `ProtocolHandler` and delegates to it); one that cannot (it extends
 * something else) holds a `ProtocolHandler` itself. Building either does no work.
 */
import type { IncomingStreamData, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

/** The part of a libp2p node that registers handlers. */
export interface Registrar {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
}

export interface ProtocolHandlerInit {
  /** The protocol id, `/peer/<name>/<version>`. */
  protocol: string
  /** Streams of this protocol per connection, each way. */
  maxInboundStreams: number
  maxOutboundStreams: number
}

/** One protocol's handler on one node, registered while started. */
export class ProtocolHandler {
  private readonly registrar: Registrar
  private readonly init: ProtocolHandlerInit
  private readonly onStream: StreamHandler
  private started = false

  constructor (registrar: Registrar, init: ProtocolHandlerInit, onStream: StreamHandler) {
    this.registrar = registrar
    this.init = init
    this.onStream = onStream
  }

  get protocol (): string {
    return this.init.protocol
  }

  get isStarted (): boolean {
    return this.started
  }

  /** Registers the handler with its stream limits; a second start does nothing. */
  async start (): Promise<void> {
    if (this.started) return
    const { protocol, maxInboundStreams, maxOutboundStreams } = this.init
    // started from the call on: a stop() that comes before the registration settles still removes it
    this.started = true
    try {
      await this.registrar.handle(protocol, this.onStream, { maxInboundStreams, maxOutboundStreams })
    } catch (err) {
      this.started = false
      throw err
    }
  }

  /** Removes the handler (streams already open run on); a stop before start does nothing. */
  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.registrar.unhandle(this.init.protocol).catch(() => {})
  }
}

/**
 * The base of a service that answers one protocol: `start`, `stop` and `isStarted` are its handler's; the
 * subclass says what each incoming stream gets (`onStream`, which must not throw). A subclass that holds more
 * than the handler overrides `stop()` and calls `super.stop()` first.
 *
 * @example
 * class EchoService extends ProtocolService {
 *   constructor (node: Registrar) { super(node, { protocol: '/peer/echo/1.0.0', maxInboundStreams: 4, maxOutboundStreams: 4 }) }
 *   protected onStream ({ stream }: IncomingStreamData): void { void stream.sink(stream.source) }
 * }
 */
export abstract class ProtocolService {
  private readonly handler: ProtocolHandler

  constructor (registrar: Registrar, init: ProtocolHandlerInit) {
    this.handler = new ProtocolHandler(registrar, init, data => { this.onStream(data) })
  }

  get protocol (): string {
    return this.handler.protocol
  }

  get isStarted (): boolean {
    return this.handler.isStarted
  }

  /** Registers the protocol's handler; a second start does nothing. */
  async start (): Promise<void> {
    await this.handler.start()
  }

  /** Removes the handler (streams already open run on); a stop before start does nothing. */
  async stop (): Promise<void> {
    await this.handler.stop()
  }

  /** One incoming stream of the protocol, while started. */
  protected abstract onStream (data: IncomingStreamData): void
}
