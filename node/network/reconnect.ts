/**
 * Keeps this peer connected to every member the manifest knows and that has
 * not left: whoever is not connected is dialled again and again, with
 * exponential backoff and jitter, until it answers. It does not care why the
 * connection went (the connection manager dropped a peer that stalled, the
 * peer restarted on another port, a link went down and came back): before
 * each attempt it records the addresses the manifest holds for the member
 * now, so a member that came back elsewhere is found where it says it is.
 *
 * Both ends of a lost connection run this, so either one's dial brings it
 * back; a peer that connects (by our dial or by its own) starts afresh at the
 * first, short delay the next time it is lost.
 *
 * Bounds: the first retry within `initialDelayMs` (0.5 s), doubling up to
 * `maxDelayMs` (4 s), each delay drawn from [½·d, d] so peers that lost each
 * other at the same moment do not dial in lock step. With a dial bounded by
 * `dialTimeoutMs` (3 s), a member is back within about 3 + 4 s of its link
 * coming back, well inside the 15 s the swarm allows.
 */
import type { Logger } from 'pino'

export interface ReconnectInit {
  /** Delay before the first attempt after a member is seen unconnected. Default 500 ms. */
  initialDelayMs?: number
  /** Longest delay between two attempts. Default 4000 ms. */
  maxDelayMs?: number
  /** Growth of the delay per failed attempt. Default 2. */
  factor?: number
  /** Fraction of a delay that is random: delays are drawn from [(1 − jitter)·d, d]. Default 0.5. */
  jitter?: number
  /** One dial may take this long. Default 3000 ms. */
  dialTimeoutMs?: number
  /** How often the member list is looked through for members not connected. Default 250 ms. */
  scanMs?: number
  random?: () => number
  now?: () => number
}

/** What the service needs of the network: node/network's Network has all of it. */
export interface ReconnectNetwork {
  readonly peerId: string
  isConnected: (peer: string) => boolean
  dial: (peer: string, signal?: AbortSignal) => Promise<string>
  learnAddresses: (peer: string, addresses: string[]) => Promise<void>
  on: (event: 'peer.connected' | 'peer.disconnected', listener: (peer: string) => void) => unknown
  off: (event: 'peer.connected' | 'peer.disconnected', listener: (peer: string) => void) => unknown
}

export interface ReconnectComponents {
  network: ReconnectNetwork
  /** The members the manifest knows now (this peer among them or not), with their addresses and state. */
  members: () => Map<string, { addresses: string[], state: string }>
  logger: Logger
}

export interface BackoffOptions {
  initialDelayMs: number
  maxDelayMs: number
  factor: number
  jitter: number
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialDelayMs: 500,
  maxDelayMs: 4000,
  factor: 2,
  jitter: 0.5
}

/**
 * The delay before attempt `attempt` (0: the first) of reaching a member:
 * `initialDelayMs · factor^attempt`, capped at `maxDelayMs`, of which the
 * fraction `jitter` is random (`random()` in [0, 1)). Never above the cap,
 * never below `(1 − jitter)` of the deterministic delay.
 */
export function backoffDelay (attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const base = Math.min(options.maxDelayMs, options.initialDelayMs * Math.pow(options.factor, Math.max(0, attempt)))
  return Math.round(base * (1 - options.jitter * random()))
}

export interface ReconnectPeerStatus {
  peerId: string
  /** Attempts made since the member was last connected. */
  attempt: number
  /** When the next attempt is due (ms since the epoch); null while one is under way. */
  nextAttemptAt: number | null
  lastError: string | null
}

export interface ReconnectStatus {
  /** Dials made to members that were not connected. */
  attempts: number
  /** Of those, the dials that connected. */
  reconnects: number
  /** Members not connected now, and when each is tried next. */
  pending: ReconnectPeerStatus[]
}

interface Pending {
  attempt: number
  nextAt: number
  dialing: boolean
  lastError: string | null
}

export class ReconnectService {
  private readonly components: ReconnectComponents
  private readonly backoff: BackoffOptions
  private readonly dialTimeoutMs: number
  private readonly scanMs: number
  private readonly random: () => number
  private readonly now: () => number
  private readonly pending = new Map<string, Pending>()
  private timer: NodeJS.Timeout | null = null
  private controller: AbortController | null = null
  private attempts = 0
  private reconnects = 0
  private readonly onConnected = (peer: string): void => { this.pending.delete(peer) }
  private readonly onDisconnected = (): void => { this.scan() }

  constructor (components: ReconnectComponents, init: ReconnectInit = {}) {
    this.components = components
    this.backoff = {
      initialDelayMs: init.initialDelayMs ?? DEFAULT_BACKOFF.initialDelayMs,
      maxDelayMs: init.maxDelayMs ?? DEFAULT_BACKOFF.maxDelayMs,
      factor: init.factor ?? DEFAULT_BACKOFF.factor,
      jitter: init.jitter ?? DEFAULT_BACKOFF.jitter
    }
    this.dialTimeoutMs = init.dialTimeoutMs ?? 3000
    this.scanMs = init.scanMs ?? 250
    this.random = init.random ?? Math.random
    this.now = init.now ?? Date.now
  }

  get isStarted (): boolean {
    return this.timer !== null
  }

  start (): void {
    if (this.timer !== null) return
    this.controller = new AbortController()
    this.components.network.on('peer.connected', this.onConnected)
    this.components.network.on('peer.disconnected', this.onDisconnected)
    this.timer = setInterval(() => { this.scan() }, this.scanMs)
    this.timer.unref()
    this.scan()
  }

  stop (): void {
    if (this.timer === null) return
    clearInterval(this.timer)
    this.timer = null
    this.controller?.abort()
    this.controller = null
    this.components.network.off('peer.connected', this.onConnected)
    this.components.network.off('peer.disconnected', this.onDisconnected)
    this.pending.clear()
  }

  get status (): ReconnectStatus {
    return {
      attempts: this.attempts,
      reconnects: this.reconnects,
      pending: [...this.pending].sort(([a], [b]) => (a < b ? -1 : 1)).map(([peerId, p]) => ({
        peerId,
        attempt: p.attempt,
        nextAttemptAt: p.dialing ? null : p.nextAt,
        lastError: p.lastError
      }))
    }
  }

  /** Looks for members that are not connected, and dials those whose delay has passed. */
  private scan (): void {
    if (this.timer === null) return
    const { network } = this.components
    const t = this.now()
    const members = this.components.members()
    for (const peer of this.pending.keys()) {
      const m = members.get(peer)
      if (m === undefined || m.state === 'left' || network.isConnected(peer)) this.pending.delete(peer)
    }
    for (const [peer, m] of members) {
      if (peer === network.peerId || m.state === 'left' || network.isConnected(peer)) continue
      let p = this.pending.get(peer)
      if (p === undefined) {
        p = { attempt: 0, nextAt: t + backoffDelay(0, this.backoff, this.random), dialing: false, lastError: null }
        this.pending.set(peer, p)
      }
      if (!p.dialing && t >= p.nextAt) void this.attempt(peer, p, m.addresses)
    }
  }

  private async attempt (peer: string, p: Pending, addresses: string[]): Promise<void> {
    const { network, logger } = this.components
    const signal = this.controller?.signal
    if (signal === undefined) return
    p.dialing = true
    this.attempts += 1
    try {
      await network.learnAddresses(peer, addresses)
      await network.dial(peer, AbortSignal.any([signal, AbortSignal.timeout(this.dialTimeoutMs)]))
      this.reconnects += 1
      logger.info({ peer, attempt: p.attempt + 1 }, 'reconnected to a member')
      if (this.pending.get(peer) === p) this.pending.delete(peer)
    } catch (err) {
      p.lastError = (err as Error).message
      p.attempt += 1
      p.nextAt = this.now() + backoffDelay(p.attempt, this.backoff, this.random)
      logger.debug({ peer, attempt: p.attempt, err: p.lastError, nextInMs: p.nextAt - this.now() }, 'could not reach a member')
    } finally {
      p.dialing = false
    }
  }
}

/** The js-libp2p way: `reconnect({ … })(components)`. */
export function reconnect (init: ReconnectInit = {}): (components: ReconnectComponents) => ReconnectService {
  return components => new ReconnectService(components, init)
}
