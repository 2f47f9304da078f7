import { EventEmitter } from 'node:events'
import { createActor, fromPromise, toPromise } from 'xstate'
import type { Logger } from 'pino'
import {
  DEFAULT_COLLECT_TIMEOUT_MS, PROPOSAL_GRACE_MS, decodeRoundMessage, encodeRoundMessage, roundsTopic
} from '../../protocols/rounds/index.ts'
import type { ProposeMessage, RoundMessage } from '../../protocols/rounds/index.ts'
import type { Network } from '../network/index.ts'
import { sumBuffer } from '../ring/index.ts'
import type { AllReduceStats, Ring, RoundSpec } from '../ring/index.ts'
import type { Compression } from '../../protocols/allreduce/index.ts'
import { roundsMachine } from './machine.ts'
import type { AgreementResult } from './machine.ts'
import { hasQuorum, quorumSize, sameMembers } from './group.ts'
import type { Group } from './group.ts'
import { RoundTimes } from './timing.ts'
import type { RoundTiming } from './timing.ts'

export interface RoundsComponents {
  network: Network
  ring: Ring
  /** The live members of the swarm (this peer included), as the manifest sees them now. */
  liveMembers: () => string[]
  /** Makes sure this peer can reach a round's members (addresses known, connections open) before the ring runs. */
  prepare?: (members: string[]) => Promise<void>
  /** Whether a member said it left (cleanly): a member that left no longer counts towards a quorum. */
  hasLeft?: (peer: string) => boolean
  /**
   * Members fetching this peer's state now (or a moment ago): a joiner that will take part once it has the
   * state. An agreement waits for them (up to HOLD_FOR_FETCH_MS) rather than go ahead without them: with a big
   * model the fetch takes longer than a round, and a joiner the swarm did not wait for is behind again the
   * moment its fetch ends, and fetches again, and again.
   */
  fetching?: () => string[]
  logger: Logger
}

export interface RoundsInit {
  /** The job whose rounds these are (its gossip topic). */
  jobId: string
  collectTimeoutMs?: number
  /** Per-step timeout of the ring (a lost or stalled neighbour aborts the round within about this). */
  stepTimeoutMs?: number
  /** `bf16`: the ring carries each vector as bfloat16 but its last `RoundRequest.exact` elements (the job's `compression`). */
  compression?: Compression
}

/** What `Rounds.round` takes: this peer's update vector for round `round`, and what its announcements carry. */
export interface RoundRequest {
  round: number
  vector: Float32Array
  /**
   * The hash of the weights the update was computed on: agreements announce it, and the ring's hello binds it
   * (in a reused group every WEIGHTS_CHECK_EVERY rounds, where it costs a hash of the whole model otherwise).
   */
  weightsHash: () => string
  samples: number
  step: number
  /** Elements at the vector's end (counts) that a bf16 ring keeps float32. */
  exact?: number
}

/** What `Rounds.round` returns: the sum over the round's members (and the round's figures), or why this peer has none. */
export type RoundOutcome =
  | { ok: true, sum: Float32Array, members: string[], attempt: number, figures: RoundFigures | null, group: Group }
  | { ok: false, outcome: 'excluded' | 'cancelled' | 'partitioned', members: string[] }

/** One completed round's figures: its all-reduce's time and bytes on this peer, and how many members summed. */
export interface RoundFigures {
  round: number
  /** Wall time of the all-reduce. */
  ms: number
  bytesSent: number
  bytesReceived: number
  /** Vector bytes per second of the all-reduce. */
  algbw: number
  members: number
}

/** The last completed round, as status shows it (`ring.last` of `peer status --json`: these fields, never renamed). */
export type LastRound = Pick<RoundFigures, 'round' | 'ms' | 'bytesSent' | 'algbw' | 'members'>

/** Set while this peer holds no quorum of its last group: it does not advance its model (docs/rounds.md). */
export interface PartitionStatus {
  /** When this peer first found itself without a quorum (ms since the epoch). */
  since: number
  /** Members of the last group this peer has a connection to (itself included). */
  reachable: number
  /** Members of the last group it needs (itself included). */
  needed: number
  group: Group
}

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
  last: LastRound | null
  events: RoundEvent[]
  /** Peers excluded for sending bad contributions, with the time the exclusion ends. */
  excluded: Array<{ peer: string, until: number, strikes: number }>
  /** The highest round seen announced by others (ahead of ours means this peer is behind). */
  highestSeen: number
  /** The group the last round was agreed in (epoch and ring order); rounds reuse it while it holds. */
  group: Group | null
  /** Rounds that reused the group without an agreement, and rounds that needed one. */
  fastRounds: number
  agreedRounds: number
  partition: PartitionStatus | null
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

/**
 * Rounds ahead of ours whose messages are kept (the highest ones), and how many messages each: a member that
 * is further behind than this is told so (`behind`), and what the swarm announces for its current round waits
 * here until this peer has caught up to it.
 */
const LOOKAHEAD_ROUNDS = 4
const MAX_KEPT_PER_ROUND = 4096
/** While it waits for a proposal, a member repeats its `ready` this often: a member that just (re)connected, or whose gossip mesh is still forming, hears it. */
const REANNOUNCE_MS = 1000
/**
 * In a reused group the ring's hello binds the weights hash every this many rounds (every round of an
 * agreement binds it): members of one group apply the same sums to the same weights, so their weights only
 * differ after a fault, which the next check finds; hashing the whole model every round would cost more
 * than the ring itself for small models.
 */
const WEIGHTS_CHECK_EVERY = 16
/** The longest an agreement waits for members fetching this peer's state (RoundsComponents.fetching). */
const HOLD_FOR_FETCH_MS = 120_000
/** Recent events kept for status. */
const MAX_EVENTS = 50

/**
 * Round membership and reduction: each round, agree on the ordered members
 * over gossip (ready → proposal), then sum the members' vectors with the ring.
 */
export class Rounds extends EventEmitter<RoundsEvents> {
  private readonly components: RoundsComponents
  private readonly jobId: string
  private readonly collectTimeoutMs: number
  private readonly stepTimeoutMs: number | undefined
  private readonly compression: Compression
  private topic: string | null = null
  private readonly inbox = new Map<number, Array<{ from: string, message: RoundMessage }>>()
  private actor: ReturnType<typeof createActor<typeof roundsMachine>> | null = null
  private currentRound = 0
  private behindRound: number | null = null
  /** Peers that caused an abort in the current round: left out of its next attempts. */
  private suspects = new Set<string>()
  private readonly strikes = new Map<string, number[]>()
  private readonly excludedUntil = new Map<string, number>()
  readonly status: RoundsStatus = { round: 0, attempt: 0, members: [], state: 'idle', completed: 0, aborted: 0, last: null, events: [], highestSeen: 0, excluded: [], group: null, fastRounds: 0, agreedRounds: 0, partition: null }
  /** The last agreed group, and whether the next round may reuse it without an agreement. */
  private group: Group | null = null
  private readonly times = new RoundTimes()
  private reuse = false
  /** Aborts the ring of a round run in the reused group (a member asked for an agreement instead). */
  private reuseAbort: AbortController | null = null
  /** A round in the reused group that failed, until the agreement after it tells a fault from a clean leave. */
  private groupFailure: { round: number, group: Group, code: string, reason: string, culprit?: string } | null = null
  rejected = 0

  constructor (components: RoundsComponents, init: RoundsInit) {
    super()
    this.components = components
    this.jobId = init.jobId
    this.collectTimeoutMs = init.collectTimeoutMs ?? DEFAULT_COLLECT_TIMEOUT_MS
    this.stepTimeoutMs = init.stepTimeoutMs
    this.compression = init.compression ?? 'none'
  }

  get isStarted (): boolean {
    return this.topic !== null
  }

  /** Hears the job's rounds topic; a second start does nothing. */
  start (): void {
    if (this.topic !== null) return
    this.topic = roundsTopic(this.jobId)
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
    if (this.reuseAbort !== null && message.round === this.currentRound && this.group?.members.includes(from) === true) {
      // a member of the group is agreeing on round r instead of running it in the group: it will never join
      // this ring, so stop waiting for it and agree too (its announcement waits in the inbox)
      this.reuseAbort.abort()
    }
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
    if (message.round < this.currentRound) return
    if (message.round > this.currentRound + LOOKAHEAD_ROUNDS) this.emit('behind', message.round)
    if (this.actor !== null && message.round === this.currentRound) {
      this.deliver(from, message)
      return
    }
    // kept for when this peer reaches that round (a member far behind syncs to the swarm's round, and the
    // announcements made meanwhile are then current): only the highest few rounds, a bounded number each
    const list = this.inbox.get(message.round) ?? []
    if (list.length < MAX_KEPT_PER_ROUND) list.push({ from, message })
    this.inbox.set(message.round, list)
    if (this.inbox.size > LOOKAHEAD_ROUNDS) this.inbox.delete(Math.min(...this.inbox.keys()))
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
   * The ring's working buffer, reused from round to round (the sum a round returns is this buffer: valid until
   * the next round). Two, alternating, so that a sum still being read is never the next round's input.
   */
  private readonly work: Float32Array[] = []
  /** How the ring carries this round's vector: float32, or bfloat16 with its counts exact (RoundsInit.compression). */
  private wire (req: RoundRequest): Pick<RoundSpec, 'compression' | 'exact'> {
    return this.compression === 'bf16' ? { compression: 'bf16', exact: req.exact ?? 0 } : {}
  }

  private workFor (vector: Float32Array): Float32Array {
    const free = this.work.find(w => w.length === vector.length && w !== vector)
    if (free !== undefined) return free
    const w = sumBuffer(vector.length) // the ring adds into it with SIMD
    this.work.push(w)
    if (this.work.length > 2) this.work.shift()
    return w
  }

  /** The last agreed group (null before the first agreement). */
  get lastGroup (): Group | null {
    return this.group
  }

  /**
   * Takes a group from a checkpoint or the swarm's state: the quorum of later agreements is counted against it.
   * It is not reused as is: the first round after a restore or a sync agrees on the members afresh.
   */
  setGroup (group: Group | null): void {
    this.group = group === null ? null : { epoch: group.epoch, members: [...group.members].sort() }
    this.status.group = this.group
    this.reuse = false
  }

  /** This peer took the winning side's state: it is rejoining, no longer cut off. */
  clearPartition (): void {
    this.status.partition = null
  }

  /** The last group without the members that left cleanly: what a new group needs a quorum of. */
  private quorumBase (): string[] | null {
    if (this.group === null) return null
    const left = this.components.hasLeft ?? (() => false)
    return this.group.members.filter(p => p === this.components.network.peerId || !left(p))
  }

  private agreed (group: Group, fast: boolean): void {
    if (this.group === null || this.group.epoch !== group.epoch || !sameMembers(this.group.members, group.members)) {
      this.event({ kind: 'members', round: this.currentRound, detail: `group ${group.epoch}: ${group.members.length} members` })
    }
    this.group = group
    this.status.group = group
    this.reuse = true
    this.status.partition = null
    if (fast) this.status.fastRounds += 1
    else this.status.agreedRounds += 1
  }

  /** `heard`: the members whose announcements reached this one in the agreement that found no quorum. */
  private partitioned (heard: string[]): void {
    const base = this.quorumBase() ?? []
    // members it heard from, not members it has a connection to: across a split that drops packets, connections
    // stay open (and read as connected) until they time out
    const reachable = new Set([this.components.network.peerId, ...heard])
    this.status.partition = {
      since: this.status.partition?.since ?? Date.now(),
      reachable: base.filter(p => reachable.has(p)).length,
      needed: quorumSize(base),
      group: this.group ?? { epoch: 0, members: [] }
    }
    this.components.logger.warn({ round: this.currentRound, group: this.group?.epoch, reachable: this.status.partition.reachable, needed: this.status.partition.needed }, 'no quorum of the last group: not advancing')
  }

  /**
   * Takes part in round `req.round`: returns the sum of the members' vectors (in a buffer these rounds reuse:
   * read it before the next round), or says that this peer was left out (it must then fetch the swarm's state)
   * or holds no quorum (it must not advance).
   *
   * In a stable group (the members of the last agreed group are exactly the live members, none suspected or
   * excluded, nobody asked for an agreement) the ring starts at once with the group's members (attempt 0);
   * otherwise, or when that ring fails, the members agree on a new group over gossip (attempts 1, 2, …).
   * `signal` ends the wait for the round (the trainer stopped): the outcome is then `cancelled`.
   */
  async round (req: RoundRequest, signal?: AbortSignal): Promise<RoundOutcome> {
    const started = performance.now()
    const outcome = await this.runRound(req, signal)
    if (outcome.ok && outcome.figures !== null) this.times.record(performance.now() - started, outcome.figures.ms)
    return outcome
  }

  /** The last completed rounds' times (rounds with a ring: a lone peer's are not timed); null before the first. */
  timing (): RoundTiming | null {
    return this.times.summary()
  }

  private async runRound (req: RoundRequest, signal?: AbortSignal): Promise<RoundOutcome> {
    const { network, logger } = this.components
    const self = network.peerId
    if (signal?.aborted === true) return { ok: false, outcome: 'cancelled', members: [] }
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
    if (live.length <= 1 && pending.length === 0 && hasQuorum(this.quorumBase(), [self])) {
      logger.debug({ round: req.round }, 'alone: the round is this peer\'s own update')
      // alone: the sum over one member is its own vector
      const group = this.group !== null && sameMembers(this.group.members, [self]) ? this.group : { epoch: (this.group?.epoch ?? 0) + 1, members: [self] }
      this.agreed(group, true)
      this.status.completed += 1
      this.status.members = [self]
      this.status.state = 'done'
      this.setRound(req.round + 1)
      return { ok: true, sum: req.vector, members: [self], attempt: 0, figures: null, group }
    }
    const group = this.group
    if (this.reuse && group !== null && group.members.length > 1 && group.members.includes(self) && pending.length === 0 &&
      sameMembers(group.members, live) && !this.excludedNow().some(p => group.members.includes(p))) {
      const result = await this.roundInGroup(req, group, signal)
      if (result !== null) return result
      // the ring failed: agree on the members again (the failure is counted, its culprit suspected)
    }
    this.reuse = false
    return await this.agree(req, signal)
  }

  /** A round in the reused group: the ring at once, attempt 0. Null when it failed (agree instead). */
  private async roundInGroup (req: RoundRequest, group: Group, signal?: AbortSignal): Promise<RoundOutcome | null> {
    const { network, ring } = this.components
    const self = network.peerId
    const controller = new AbortController()
    const onAbort = (): void => { controller.abort() }
    signal?.addEventListener('abort', onAbort)
    this.reuseAbort = controller
    this.status.attempt = 0
    this.status.members = group.members
    this.status.state = 'reducing'
    let result
    try {
      const others = group.members.filter(m => m !== self && !network.isConnected(m))
      if (others.length > 0) await this.components.prepare?.(others).catch(() => {})
      result = await ring.run({ round: req.round, attempt: 0, members: group.members, self, vector: req.vector, into: this.workFor(req.vector), stepTimeoutMs: this.stepTimeoutMs, ...this.wire(req), tag: groupTag(group.epoch, req.round % WEIGHTS_CHECK_EVERY === 0 ? req.weightsHash() : '') }, controller.signal)
    } finally {
      this.reuseAbort = null
      signal?.removeEventListener('abort', onAbort)
    }
    if (result.ok) {
      this.agreed(group, true)
      this.status.completed += 1
      this.status.state = 'done'
      const figures = figuresOf(req.round, result.stats, group.members.length)
      this.status.last = lastRoundOf(figures)
      this.setRound(req.round + 1)
      return { ok: true, sum: result.sum, members: group.members, attempt: 0, figures, group }
    }
    if (signal?.aborted === true) return { ok: false, outcome: 'cancelled', members: group.members }
    if (result.code !== 'cancelled') {
      this.blame(result.culprit, result.code === 'peer-aborted' ? result.cause : result.code, req.round)
      // told apart once the agreement that follows has run: a member that was leaving cleanly (its goodbye
      // still on its way over gossip when this round started) is no fault, and by then it is known to have left
      this.groupFailure = { round: req.round, group, code: result.code, reason: result.reason, culprit: result.culprit }
    }
    return null
  }

  /** Counts the failed round in the reused group (see roundInGroup) as an abort, or as a member that left. */
  private settleGroupFailure (): void {
    const f = this.groupFailure
    if (f === null) return
    this.groupFailure = null
    const left = f.group.members.filter(p => this.components.hasLeft?.(p) === true)
    if (left.length > 0) {
      this.event({ kind: 'members', round: f.round, detail: `group ${f.group.epoch} ended: ${left.length} member(s) left` })
      return
    }
    this.status.aborted += 1
    this.event({ kind: 'aborted', round: f.round, detail: `group ${f.group.epoch}: ${f.code}: ${f.reason}`, culprit: f.culprit })
    this.components.logger.warn({ round: f.round, epoch: f.group.epoch, reason: f.reason, culprit: f.culprit }, 'round in the group aborted')
  }

  /** A round whose members are agreed first (ready → proposal), starting a new group. */
  private async agree (req: RoundRequest, signal?: AbortSignal): Promise<RoundOutcome> {
    // (a signal that fires from here on cancels the agreement: the listener is added before the next await)
    if (signal?.aborted === true) return { ok: false, outcome: 'cancelled', members: [] }
    const { network, ring, logger } = this.components
    const self = network.peerId
    const live = this.components.liveMembers()
    const pending = this.inbox.get(req.round) ?? []
    const weightsHash = req.weightsHash()
    let stats: AllReduceStats | null = null
    const logic = roundsMachine.provide({
      actors: {
        announce: fromPromise(async ({ input }) => {
          await this.publish({ t: 'ready', round: input.round, attempt: input.attempt, samples: req.samples, weightsHash, step: req.step, epoch: this.group?.epoch ?? 0 })
        }),
        propose: fromPromise(async ({ input }: { input: ProposeMessage }) => {
          logger.debug({ round: input.round, attempt: input.attempt, epoch: input.epoch, members: input.members, weightsHash: input.weightsHash, ready: actor.getSnapshot().context.ready, expected: actor.getSnapshot().context.expected, excluded: actor.getSnapshot().context.excluded }, 'proposing the round')
          await this.publish(input)
        }),
        allReduce: fromPromise(async ({ input, signal: abort }) => {
          this.status.attempt = input.attempt
          this.status.members = input.members
          this.status.state = 'reducing'
          logger.debug({ round: input.round, attempt: input.attempt, epoch: input.epoch, members: input.members.length }, 'round agreed')
          await this.components.prepare?.(input.members.filter(m => m !== self)).catch(() => {})
          const result = await ring.run({ round: input.round, attempt: input.attempt, members: input.members, self, vector: req.vector, into: this.workFor(req.vector), stepTimeoutMs: this.stepTimeoutMs, ...this.wire(req), tag: groupTag(input.epoch, weightsHash) }, abort)
          if (result.ok) {
            stats = result.stats
            req.vector = result.sum
            return { ok: true as const }
          }
          if (result.code === 'cancelled') return { ok: false as const, reason: result.reason }
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
    // attempt 0 of every round belongs to the ring in the reused group; agreements start at attempt 1
    const actor = createActor(logic, { input: { round: req.round, attempt: 1, self, weightsHash, expected: live, excluded: this.excludedNow(), epoch: this.group?.epoch ?? 0, base: this.quorumBase() } })
    this.actor = actor
    const onAbort = (): void => { actor.send({ type: 'round.cancel' }) }
    signal?.addEventListener('abort', onAbort)
    let lastAnnounce = Date.now()
    const holdUntil = Date.now() + HOLD_FOR_FETCH_MS
    const membersTimer = setInterval(() => {
      actor.send({ type: 'members.changed', live: this.components.liveMembers(), excluded: this.excludedNow() })
      const snapshot = actor.getSnapshot()
      if (snapshot.value === 'waiting' && Date.now() < holdUntil) {
        const ready = snapshot.context.ready
        const fetching = this.components.fetching?.() ?? []
        const { expected, excluded } = snapshot.context
        if (fetching.some(p => ready[p] === undefined && expected.includes(p) && !excluded.includes(p))) actor.send({ type: 'collect.hold' })
      }
      if (snapshot.value === 'waiting' && Date.now() - lastAnnounce >= REANNOUNCE_MS) {
        lastAnnounce = Date.now()
        this.publish({ t: 'ready', round: req.round, attempt: snapshot.context.attempt, samples: req.samples, weightsHash, step: req.step, epoch: this.group?.epoch ?? 0 }).catch(() => {})
      }
    }, 250)
    actor.subscribe(s => { if (typeof s.value === 'string') this.status.state = s.value })
    actor.start()
    this.status.attempt = 1
    for (const { from, message } of pending) this.deliver(from, message)
    this.inbox.delete(req.round)
    let output: AgreementResult
    try {
      output = await toPromise(actor)
    } finally {
      clearInterval(membersTimer)
      signal?.removeEventListener('abort', onAbort)
      this.actor = null
      this.settleGroupFailure()
    }
    if (output.outcome === 'cancelled' && this.behindRound !== null) {
      const ahead = this.behindRound
      this.behindRound = null
      this.event({ kind: 'behind', round: req.round, detail: `the swarm is at round ${ahead}` })
      this.emit('behind', ahead)
      return { ok: false, outcome: 'excluded', members: [] }
    }
    if (output.outcome === 'partitioned') {
      this.partitioned(output.ready)
      return { ok: false, outcome: 'partitioned', members: [] }
    }
    if (output.outcome !== 'done') {
      if (output.outcome === 'excluded') {
        this.event({ kind: 'excluded', round: req.round, detail: `round ${req.round} went ahead without this peer` })
        this.emit('behind', req.round + 1)
      }
      return { ok: false, outcome: output.outcome, members: output.members }
    }
    const group: Group = { epoch: output.epoch, members: output.members }
    this.agreed(group, false)
    this.status.completed += 1
    const s = stats as AllReduceStats | null
    const figures = s === null ? null : figuresOf(req.round, s, output.members.length)
    if (figures !== null) this.status.last = lastRoundOf(figures)
    this.setRound(req.round + 1)
    return { ok: true, sum: req.vector, members: output.members, attempt: output.attempt, figures, group }
  }
}

function figuresOf (round: number, stats: AllReduceStats, members: number): RoundFigures {
  return { round, ms: stats.ms, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived, algbw: stats.algbw, members }
}

function lastRoundOf (f: RoundFigures): LastRound {
  return { round: f.round, ms: f.ms, bytesSent: f.bytesSent, algbw: f.algbw, members: f.members }
}

/** What the ring hashes with the member list: the group epoch and the weights every member starts from. */
function groupTag (epoch: number, weightsHash: string): string {
  return `epoch ${epoch} weights ${weightsHash}`
}
