import { EventEmitter } from 'node:events'
import { createActor, fromPromise, toPromise } from 'xstate'
import type { Logger } from 'pino'
import {
  DEFAULT_COLLECT_TIMEOUT_MS, PROPOSAL_GRACE_MS, decodeRoundMessage, encodeRoundMessage, roundsTopic
} from '../../protocols/rounds/index.ts'
import type { ProposeMessage, RoundMessage } from '../../protocols/rounds/index.ts'
import type { Network } from '../network/index.ts'
import type { Ring, RoundStats } from '../ring/index.ts'
import { roundsMachine } from './machine.ts'
import type { RoundsOutput } from './machine.ts'

export interface RoundsComponents {
  network: Network
  ring: Ring
  /** The live members of the swarm (this peer included), as the manifest sees them now. */
  liveMembers: () => string[]
  /** Makes sure this peer can reach a round's members (addresses known, connections open) before the ring runs. */
  prepare?: (members: string[]) => Promise<void>
  logger: Logger
}

export interface RoundsInit {
  collectTimeoutMs?: number
  /** Per-step timeout of the ring (a lost or stalled neighbour aborts the round within about this). */
  stepTimeoutMs?: number
}

export interface ReduceRequest {
  round: number
  vector: Float32Array
  weightsHash: string
  samples: number
  step: number
}

export type ReduceResult =
  | { ok: true, sum: Float32Array, members: string[], attempt: number, stats: RoundStats | null }
  | { ok: false, outcome: 'excluded' | 'cancelled', members: string[] }

export interface RoundEvent {
  at: number
  kind: 'aborted' | 'excluded' | 'behind' | 'members'
  round: number
  detail: string
  culprit?: string
}

export interface RoundsStatus {
  round: number
  attempt: number
  members: string[]
  state: string
  completed: number
  aborted: number
  last: { round: number, ms: number, bytesSent: number, algbw: number, members: number } | null
  events: RoundEvent[]
  /** Peers excluded for sending bad contributions, with the time the exclusion ends. */
  excluded: Array<{ peer: string, until: number, strikes: number }>
  /** The highest round seen announced by others (ahead of ours means this peer is behind). */
  highestSeen: number
}

export interface RoundsEvents {
  /** Others are at a later round than this peer: it must fetch the swarm's state. */
  behind: [number]
}

/**
 * The exclusion rule for bad contributions: a peer named as the sender of an
 * invalid frame (NaN or Inf, wrong length, oversized, malformed) in
 * STRIKES_TO_EXCLUDE rounds within STRIKE_WINDOW_MS is left out of the rounds
 * this peer proposes, and not waited for, for EXCLUSION_MS.
 */
export const STRIKES_TO_EXCLUDE = 3
export const STRIKE_WINDOW_MS = 10 * 60_000
export const EXCLUSION_MS = 5 * 60_000
/** Abort codes that name a peer as the cause and leave it out of the next attempts of the same round. */
const SUSPECT_CODES = new Set(['peer-lost', 'timeout', 'invalid-frame', 'mismatch'])

/** Messages kept for rounds at most this far ahead of ours (a member slightly ahead announces early). */
const LOOKAHEAD_ROUNDS = 4
/** Recent events kept for status. */
const MAX_EVENTS = 50

/**
 * Round membership and reduction: each round, agree on the ordered members
 * over gossip (ready → proposal), then sum the members' vectors with the ring.
 */
export class Rounds extends EventEmitter<RoundsEvents> {
  private readonly components: RoundsComponents
  private readonly collectTimeoutMs: number
  private readonly stepTimeoutMs: number | undefined
  private topic: string | null = null
  private readonly inbox = new Map<number, Array<{ from: string, message: RoundMessage }>>()
  private actor: ReturnType<typeof createActor<typeof roundsMachine>> | null = null
  private currentRound = 0
  private behindRound: number | null = null
  /** Peers that caused an abort in the current round: left out of its next attempts. */
  private suspects = new Set<string>()
  private readonly strikes = new Map<string, number[]>()
  private readonly excludedUntil = new Map<string, number>()
  readonly status: RoundsStatus = { round: 0, attempt: 0, members: [], state: 'idle', completed: 0, aborted: 0, last: null, events: [], highestSeen: 0, excluded: [] }
  rejected = 0

  constructor (components: RoundsComponents, init: RoundsInit = {}) {
    super()
    this.components = components
    this.collectTimeoutMs = init.collectTimeoutMs ?? DEFAULT_COLLECT_TIMEOUT_MS
    this.stepTimeoutMs = init.stepTimeoutMs
  }

  start (jobId: string): void {
    this.topic = roundsTopic(jobId)
    this.components.network.subscribe(this.topic, (from, data) => { this.onMessage(from, data) }, (_from, data) => {
      try {
        decodeRoundMessage(data)
        return true
      } catch {
        this.rejected += 1
        return false
      }
    })
  }

  stop (): void {
    this.actor?.send({ type: 'round.cancel' })
    if (this.topic !== null) this.components.network.unsubscribe(this.topic)
    this.topic = null
  }

  /** Peers not to wait for or include now: suspects of this round, and those excluded for bad contributions. */
  excludedNow (): string[] {
    const now = Date.now()
    for (const [peer, until] of this.excludedUntil) if (until <= now) this.excludedUntil.delete(peer)
    this.status.excluded = [...this.excludedUntil].map(([peer, until]) => ({ peer, until, strikes: this.strikes.get(peer)?.length ?? 0 }))
    return [...new Set([...this.suspects, ...this.excludedUntil.keys()])].filter(p => p !== this.components.network.peerId)
  }

  /** Records who caused an abort; repeated bad contributions exclude a peer for a while. */
  private blame (culprit: string | undefined, code: string, round: number): void {
    if (culprit === undefined || culprit === this.components.network.peerId) return
    if (SUSPECT_CODES.has(code)) this.suspects.add(culprit)
    if (code !== 'invalid-frame') return
    const now = Date.now()
    const list = (this.strikes.get(culprit) ?? []).filter(t => now - t < STRIKE_WINDOW_MS)
    list.push(now)
    this.strikes.set(culprit, list)
    if (list.length >= STRIKES_TO_EXCLUDE && !this.excludedUntil.has(culprit)) {
      this.excludedUntil.set(culprit, now + EXCLUSION_MS)
      this.event({ kind: 'members', round, detail: `excluded for ${EXCLUSION_MS / 60_000} min after ${list.length} bad contributions`, culprit })
      this.components.logger.warn({ peer: culprit, strikes: list.length }, 'peer excluded for repeated bad contributions')
    }
  }

  /** Skips to a round (after fetching the swarm's state). */
  setRound (round: number): void {
    if (round !== this.currentRound) this.suspects = new Set()
    this.currentRound = round
    this.status.round = round
    for (const r of this.inbox.keys()) if (r < round) this.inbox.delete(r)
  }

  private event (e: Omit<RoundEvent, 'at'>): void {
    this.status.events.push({ at: Date.now(), ...e })
    if (this.status.events.length > MAX_EVENTS) this.status.events.shift()
  }

  private onMessage (from: string, data: Uint8Array): void {
    const message = decodeRoundMessage(data)
    if (message.round > this.status.highestSeen) this.status.highestSeen = message.round
    if (this.actor !== null && message.round > this.currentRound) {
      const state = this.actor.getSnapshot().value
      if (state === 'announcing' || state === 'waiting' || state === 'retrying') {
        // the swarm finished a round this peer is still waiting for: it went ahead without us
        this.behindRound = message.round
        this.actor.send({ type: 'round.cancel' })
      }
    }
    if (message.t === 'propose' && message.round > this.currentRound && this.actor === null) {
      // a round was agreed that this peer never reached: it is behind
      this.emit('behind', message.round)
    }
    if (message.round < this.currentRound || message.round > this.currentRound + LOOKAHEAD_ROUNDS) {
      if (message.round > this.currentRound + LOOKAHEAD_ROUNDS) this.emit('behind', message.round)
      return
    }
    if (this.actor !== null && message.round === this.currentRound) {
      this.deliver(from, message)
      return
    }
    const list = this.inbox.get(message.round) ?? []
    if (list.length < 4096) list.push({ from, message })
    this.inbox.set(message.round, list)
  }

  private deliver (from: string, message: RoundMessage): void {
    if (message.t === 'ready') this.actor?.send({ type: 'ready.received', from, message })
    else this.actor?.send({ type: 'proposal.received', from, message })
  }

  private async publish (message: RoundMessage): Promise<void> {
    if (this.topic === null) throw new Error('rounds not started')
    await this.components.network.publish(this.topic, encodeRoundMessage(message))
  }

  /**
   * Takes part in round `req.round`: returns the sum of the members' vectors,
   * or says that this peer was left out (it must then fetch the swarm's state).
   */
  async reduce (req: ReduceRequest, signal?: AbortSignal): Promise<ReduceResult> {
    const { network, ring, logger } = this.components
    const self = network.peerId
    this.setRound(req.round)
    this.behindRound = null
    const later = [...this.inbox.keys()].filter(r => r > req.round)
    if (later.length > 0) {
      // others already announced a later round: this one went ahead without us
      const ahead = Math.max(...later)
      this.event({ kind: 'behind', round: req.round, detail: `the swarm is at round ${ahead}` })
      this.emit('behind', ahead)
      return { ok: false, outcome: 'excluded', members: [] }
    }
    const live = this.components.liveMembers()
    const pending = this.inbox.get(req.round) ?? []
    if (live.length <= 1 && pending.length === 0) {
      logger.debug({ round: req.round }, 'alone: the round is this peer\'s own update')
      // alone: the sum over one member is its own vector
      this.status.completed += 1
      this.status.members = [self]
      this.status.state = 'done'
      this.setRound(req.round + 1)
      return { ok: true, sum: req.vector, members: [self], attempt: 0, stats: null }
    }
    let stats: RoundStats | null = null
    const logic = roundsMachine.provide({
      actors: {
        announce: fromPromise(async ({ input }) => {
          await this.publish({ t: 'ready', round: input.round, attempt: input.attempt, samples: req.samples, weightsHash: req.weightsHash, step: req.step })
        }),
        propose: fromPromise(async ({ input }: { input: ProposeMessage }) => {
          logger.debug({ round: input.round, attempt: input.attempt, members: input.members, weightsHash: input.weightsHash, ready: actor.getSnapshot().context.ready, expected: actor.getSnapshot().context.expected, excluded: actor.getSnapshot().context.excluded }, 'proposing the round')
          await this.publish(input)
        }),
        reduce: fromPromise(async ({ input, signal: abort }) => {
          this.status.attempt = input.attempt
          this.status.members = input.members
          this.status.state = 'reducing'
          logger.debug({ round: input.round, attempt: input.attempt, members: input.members.length }, 'round agreed')
          await this.components.prepare?.(input.members.filter(m => m !== self)).catch(() => {})
          const result = await ring.run({ round: input.round, attempt: input.attempt, members: input.members, self, vector: req.vector, stepTimeoutMs: this.stepTimeoutMs }, abort)
          if (result.ok) {
            stats = result.stats
            req.vector = result.sum
            return { ok: true as const }
          }
          this.status.aborted += 1
          this.blame(result.culprit, result.code === 'peer-aborted' ? result.cause : result.code, input.round)
          actor.send({ type: 'members.changed', live: this.components.liveMembers(), excluded: this.excludedNow() })
          this.event({ kind: 'aborted', round: input.round, detail: `attempt ${input.attempt}: ${result.code}: ${result.reason}`, culprit: result.culprit })
          logger.warn({ round: input.round, attempt: input.attempt, reason: result.reason, culprit: result.culprit }, 'round aborted')
          return { ok: false as const, reason: result.reason, culprit: result.culprit }
        })
      },
      delays: {
        collectTimeout: this.collectTimeoutMs,
        proposalTimeout: this.collectTimeoutMs + PROPOSAL_GRACE_MS
      }
    })
    const actor = createActor(logic, { input: { round: req.round, self, weightsHash: req.weightsHash, expected: live, excluded: this.excludedNow() } })
    this.actor = actor
    const onAbort = (): void => { actor.send({ type: 'round.cancel' }) }
    signal?.addEventListener('abort', onAbort)
    const membersTimer = setInterval(() => { actor.send({ type: 'members.changed', live: this.components.liveMembers(), excluded: this.excludedNow() }) }, 250)
    actor.subscribe(s => { if (typeof s.value === 'string') this.status.state = s.value })
    actor.start()
    this.status.attempt = 0
    for (const { from, message } of pending) this.deliver(from, message)
    this.inbox.delete(req.round)
    let output: RoundsOutput
    try {
      output = await toPromise(actor)
    } finally {
      clearInterval(membersTimer)
      signal?.removeEventListener('abort', onAbort)
      this.actor = null
    }
    if (output.outcome === 'cancelled' && this.behindRound !== null) {
      const ahead = this.behindRound
      this.behindRound = null
      this.event({ kind: 'behind', round: req.round, detail: `the swarm is at round ${ahead}` })
      this.emit('behind', ahead)
      return { ok: false, outcome: 'excluded', members: [] }
    }
    if (output.outcome !== 'done') {
      if (output.outcome === 'excluded') {
        this.event({ kind: 'excluded', round: req.round, detail: `round ${req.round} went ahead without this peer` })
        this.emit('behind', req.round + 1)
      }
      return { ok: false, outcome: output.outcome, members: output.members }
    }
    this.status.completed += 1
    const s = stats as RoundStats | null
    if (s !== null) this.status.last = { round: req.round, ms: s.ms, bytesSent: s.bytesSent, algbw: s.algbw, members: output.members.length }
    this.setRound(req.round + 1)
    return { ok: true, sum: req.vector, members: output.members, attempt: output.attempt, stats: s }
  }
}
