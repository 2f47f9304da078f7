/**
 * The start/stop every protocol service shares: `start()` registers one protocol's stream handler with its
 * stream limits, `stop()` removes it, `isStarted` says which. Services hold one and delegate to it; building
 * one does no work.
 */
import type { StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

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
