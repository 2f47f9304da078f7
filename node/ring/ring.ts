import { createActor, fromCallback, fromPromise, toPromise } from 'xstate'
import type { Actor } from 'xstate'
import {
  ABORT_NOTIFY_TIMEOUT_MS, DEFAULT_BLOCK_BYTES, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_STEP_TIMEOUT_MS, GATHER_MAX_BYTES, MAX_BLOCK_BYTES,
  MAX_MEMBERS, MAX_PEER_ID_BYTES, MAX_U32, RoundAbortedError, STEP_TIMEOUT_BYTES_PER_MS, COMPRESSIONS,
  assertLittleEndian, encodeAbort
} from '../../protocols/allreduce/index.ts'
import type { AbortCode, Compression } from '../../protocols/allreduce/index.ts'
import { NarrowRoom } from '../common/simd-floats.ts'
import { runExchange } from './exchange.ts'
import { gathers } from './layout.ts'
import type { ExchangePlan, ExchangeProgress } from './exchange.ts'
import { ringMachine, ringStateName } from './machine.ts'
import type { AbortNotice, ExchangeInput, RingEvent } from './machine.ts'
import type { OutboundChannel, RingTransport } from './transport.ts'

export interface RoundSpec {
  round: number
  /** Retry number of this round; (round, attempt) must never repeat, and must grow from one run to the next. */
  attempt: number
  /** The ring, in order: the same list on every member (the round aborts otherwise). */
  members: string[]
  /** This member's id, one of `members`. */
  self: string
  /**
   * Hashed into the hello with the member list, so that neighbours with another tag abort (`mismatch`): the
   * rounds put the group epoch and the weights hash here, so that no member sums over another group or from
   * other weights.
   */
  tag?: string
  /** This member's contribution. Not modified; the sum comes back as a new array (or in `into`). */
  vector: Float32Array
  /**
   * Where to sum (same length as `vector`, not `vector` itself): the result's `sum` is then this array. Callers
   * that run round after round pass the same buffer each time, so that no vector-sized array is allocated per
   * round (external memory that drives V8's full collections, tens of ms each). One made by `sumBuffer` is
   * added and copied into with SIMD (about 3x the JavaScript loops); its `buffer` is larger than the vector.
   */
  into?: Float32Array
  /**
   * Longest a step may take (default: the ring's, DEFAULT_STEP_TIMEOUT_MS unless set), plus the time one chunk
   * takes at STEP_TIMEOUT_BYTES_PER_MS (nothing to speak of for small vectors; seconds for 100 MB).
   */
  stepTimeoutMs?: number
  /** Longest connecting (dial, hellos) may take (default: the ring's, DEFAULT_CONNECT_TIMEOUT_MS unless set). */
  connectTimeoutMs?: number
  /**
   * `bf16`: the vector travels as bfloat16 but for its last `exact` elements (float32's upper half, rounded to
   * nearest even: half the bytes), and every member ends with the same sum, each element but those rounded to
   * bfloat16. Default `none`: float32 throughout. A round that gathers whole vectors (a small vector) and a
   * member alone are float32 whatever this says. Every member of a round must pass the same (and the same `exact`).
   */
  compression?: Compression
  /** A `bf16` round: elements at the vector's end that stay float32 (counts the sum must get exactly). Default 0. */
  exact?: number
}

/** One all-reduce's figures on this member (time, bytes each way, bandwidth, steps done), whether it succeeded or not. */
export interface AllReduceStats {
  ms: number
  /** Frame bytes written to the successor (headers included). */
  bytesSent: number
  /** Frame bytes read from the predecessor (headers and stale frames of earlier rounds included). */
  bytesReceived: number
  /** Vector bytes per second of the whole round (size / time). */
  algbw: number
  /** Steps completed (2(N−1) when the round succeeded). */
  steps: number
}

/** What `Ring.run` returns for one all-reduce: the sum and its figures, or why this member aborted it. */
export type AllReduceResult =
  | { ok: true, sum: Float32Array, stats: AllReduceStats }
  | {
    ok: false
    /** Why this member aborted (see docs/ring.md). */
    code: AbortCode
    /** Why the first member to abort did: equal to `code`, except for `peer-aborted`, where it is the code passed round in the abort frames. */
    cause: AbortCode
    reason: string
    /** The member to blame, where one is known (the sender of a bad frame, a lost neighbour), passed round unchanged. */
    culprit?: string
    stats: AllReduceStats
  }

export interface RingComponents {
  transport: RingTransport
  /** Log lines, already prefixed `peer:ring <self>`. */
  logger?: (msg: string) => void
}

export interface RingInit {
  /**
   * Bytes of vector per data frame (default: the transport's `blockBytes`, else DEFAULT_BLOCK_BYTES; a multiple of
   * 4, at most MAX_BLOCK_BYTES). A chunk smaller than a block is sent as one block.
   */
  blockBytes?: number
  /** Default step timeout of a round (DEFAULT_STEP_TIMEOUT_MS). */
  stepTimeoutMs?: number
  /** Default connect timeout of a round (DEFAULT_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number
  /** Longest the abort notice to the successor may hold up an aborted round's result (ABORT_NOTIFY_TIMEOUT_MS). */
  notifyTimeoutMs?: number
  /**
   * Up to how many bytes sent per member a round gathers whole vectors (GATHER_MAX_BYTES; layout.ts `gathers`).
   * 0: every round reduces chunks, also with 2 members. Every member of a ring must use the same (their hellos
   * say which way each goes; a round whose neighbours disagree aborts with `mismatch`).
   */
  gatherMaxBytes?: number
}

export interface RingStatus {
  round: number
  attempt: number
  members: string[]
  /** `connecting`, `reduce-scatter k/N−1`, `all-gather k/N−1`, `aborting`, `aborted`, `done`. */
  state: string
  /** The last finished round's outcome, for status pages. */
  last: null | { round: number, attempt: number, ok: boolean, code?: AbortCode, cause?: AbortCode, reason?: string, culprit?: string, stats: AllReduceStats }
}

function specProblem (spec: RoundSpec): string | null {
  const u32 = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_U32
  if (!u32(spec.round)) return `round ${spec.round} is not a u32`
  if (!u32(spec.attempt)) return `attempt ${spec.attempt} is not a u32`
  if (!(spec.vector instanceof Float32Array)) return 'vector is not a Float32Array'
  if (spec.vector.length > MAX_U32) return 'vector too long'
  if (!Array.isArray(spec.members) || spec.members.length === 0) return 'no members'
  if (spec.members.length > MAX_MEMBERS) return `${spec.members.length} members, at most ${MAX_MEMBERS}`
  for (const id of spec.members) {
    if (typeof id !== 'string' || id.length === 0 || Buffer.byteLength(id) > MAX_PEER_ID_BYTES) return `bad member id ${JSON.stringify(id)}`
  }
  if (new Set(spec.members).size !== spec.members.length) return 'duplicate members'
  if (!spec.members.includes(spec.self)) return `self ${spec.self} is not a member`
  if (spec.compression !== undefined && !(COMPRESSIONS as readonly string[]).includes(spec.compression)) return `unknown compression ${String(spec.compression)}`
  if (spec.exact !== undefined && !(Number.isInteger(spec.exact) && spec.exact >= 0 && spec.exact <= spec.vector.length)) return `exact ${spec.exact} is not a count of the vector's ${spec.vector.length} elements`
  if (spec.exact !== undefined && spec.exact > 0 && spec.compression !== 'bf16') return 'exact is for a bf16 round'
  for (const key of ['stepTimeoutMs', 'connectTimeoutMs'] as const) {
    const v = spec[key]
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) return `${key} must be a positive number`
  }
  return null
}

/**
 * Runs all-reduce rounds over a ring transport, one at a time (a second `run` waits for the first).
 * See `index.ts` for the contract.
 */
export class Ring {
  readonly #transport: RingTransport
  /** The round under way, by (round, attempt), for the machine's actors (the machine is provided once, not per round). */
  readonly #live = new Map<string, LiveRound>()
  /** The ring machine with this ring's actors: they look their round up in #live by the (round, attempt) they are given. */
  readonly #logic = ringMachine.provide({
    actors: {
      exchange: fromCallback<RingEvent, ExchangeInput>(({ sendBack, input }) => {
        const live = this.#live.get(roundKey(input.round, input.attempt))
        if (live === undefined) {
          sendBack({ type: 'exchange.failed', error: `round ${input.round}.${input.attempt} is not under way` })
          return () => {}
        }
        const controller = new AbortController()
        runExchange(this.#transport, live.plan, live.progress, sendBack, controller.signal)
          .catch((err: unknown) => { sendBack({ type: 'exchange.failed', error: String(err) }) })
        return () => { controller.abort(ROUND_OVER) }
      }),
      notifyAbort: fromPromise<void, AbortNotice>(async ({ input, signal }) => {
        const live = this.#live.get(roundKey(input.round, input.attempt))
        if (live === undefined) return
        const { progress, succ } = live
        // A successor that is itself the reason cannot be told, unless the round's channel to it still stands
        // (its stream was cut elsewhere, say a tampered record dropped by its successor, while it waits on this
        // member's data: tell it at once rather than let it time out). Otherwise tell it, on the round's channel
        // or on a new one (the round may have failed before its channel was open, and the successor waits for a hello).
        if (input.code === 'peer-lost' && input.culprit === succ && progress.out?.open !== true) return
        const out = progress.out?.open === true ? progress.out : await this.#transport.outbound(succ, signal)
        await out.send([encodeAbort({
          round: input.round,
          attempt: input.attempt,
          code: input.code,
          reason: input.reason,
          ...(input.culprit !== null ? { culprit: input.culprit } : {})
        })], signal)
      })
    }
  })

  readonly #log: (msg: string) => void
  readonly #blockElements: number
  readonly #stepTimeoutMs: number
  readonly #connectTimeoutMs: number
  readonly #notifyTimeoutMs: number
  readonly #gatherMaxBytes: number
  #started = false
  #queue: Promise<void> = Promise.resolve()
  #actor: Actor<typeof ringMachine> | null = null
  #status: RingStatus | null = null
  /** Outbound channels a failed round found stalled: closed when the next round starts. */
  readonly #stale: OutboundChannel[] = []
  /** The other members' vectors in a gathering round of 3 or more, kept from round to round while the size holds. */
  #gathered: Float32Array[] = []
  /** Where a bf16 round's blocks are narrowed before they are sent (one chunk's room per step), kept while the size holds. */
  #narrowed: NarrowRoom | null = null

  constructor (components: RingComponents, init: RingInit = {}) {
    assertLittleEndian()
    const blockBytes = init.blockBytes ?? components.transport.blockBytes ?? DEFAULT_BLOCK_BYTES
    if (!Number.isInteger(blockBytes) || blockBytes < 4 || blockBytes % 4 !== 0 || blockBytes > MAX_BLOCK_BYTES) {
      throw new RangeError(`blockBytes must be a multiple of 4 from 4 to ${MAX_BLOCK_BYTES}`)
    }
    this.#transport = components.transport
    const logger = components.logger
    this.#log = logger === undefined ? () => {} : msg => { logger(`peer:ring ${msg}`) }
    this.#blockElements = blockBytes / 4
    this.#stepTimeoutMs = init.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS
    this.#connectTimeoutMs = init.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
    this.#notifyTimeoutMs = init.notifyTimeoutMs ?? ABORT_NOTIFY_TIMEOUT_MS
    this.#gatherMaxBytes = init.gatherMaxBytes ?? GATHER_MAX_BYTES
  }

  /** Starts the transport (registers the protocol handler / opens the listener). */
  async start (): Promise<void> {
    if (this.#started) return
    await this.#transport.start()
    this.#started = true
  }

  /** Aborts the round under way (code `stopped`), waits for it to end, and stops the transport. */
  async stop (): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#actor?.send({ type: 'round.cancel', code: 'stopped', reason: 'ring stopped' })
    await this.#queue
    await this.#transport.stop()
  }

  /** Whether `start` ran and `stop` has not (like the other services). */
  get isStarted (): boolean {
    return this.#started
  }

  /** The round under way or the last one, for status. */
  status (): RingStatus | null {
    return this.#status === null ? null : { ...this.#status, members: [...this.#status.members] }
  }

  /**
   * Sums `spec.vector` over the ring. Never throws for a failed round: it returns `{ ok: false, code, reason,
   * culprit? }`. With `signal` aborted, the round is cancelled (code `cancelled`) and the other members abort too.
   */
  async run (spec: RoundSpec, signal?: AbortSignal): Promise<AllReduceResult> {
    const previous = this.#queue
    let release: () => void = () => {}
    this.#queue = new Promise<void>(resolve => { release = resolve })
    try {
      await previous
      return await this.#run(spec, signal)
    } finally {
      release()
    }
  }

  /**
   * Buffers for the other members' vectors of a gathering round (N − 1 of them beyond this member's unused
   * entry, at most GATHER_MAX_BYTES in all); none for 2 members. The same ones serve every round of that size.
   */
  #gatherBuffers (elements: number, n: number): Float32Array[] {
    if (n <= 2) return []
    if (this.#gathered.length !== n || this.#gathered[0].length !== elements) {
      this.#gathered = Array.from({ length: n }, () => new Float32Array(elements))
    }
    return this.#gathered
  }

  /** Room for the narrowed blocks of a bf16 round: one chunk per step, the same buffer round after round. */
  #narrowBuffer (elements: number, n: number): NarrowRoom {
    const size = 2 * (n - 1) * Math.ceil(elements / n)
    if (this.#narrowed?.length !== size) this.#narrowed = new NarrowRoom(size, this.#blockElements)
    return this.#narrowed
  }

  async #run (spec: RoundSpec, signal: AbortSignal | undefined): Promise<AllReduceResult> {
    const started = performance.now()
    const stats = (steps: number, progress?: ExchangeProgress): AllReduceStats => {
      const ms = performance.now() - started
      return {
        ms,
        bytesSent: progress?.bytesSent ?? 0,
        bytesReceived: progress?.bytesReceived ?? 0,
        algbw: ms > 0 ? spec.vector.byteLength / (ms / 1000) : 0,
        steps
      }
    }
    const problem = specProblem(spec)
    if (problem !== null) return { ok: false, code: 'invalid-spec', cause: 'invalid-spec', reason: problem, stats: stats(0) }
    if (!this.#started) return { ok: false, code: 'stopped', cause: 'stopped', reason: 'ring is not started', stats: stats(0) }
    if (signal?.aborted === true) return { ok: false, code: 'cancelled', cause: 'cancelled', reason: 'cancelled before the round started', stats: stats(0) }

    for (const channel of this.#stale.splice(0)) channel.close()
    const n = spec.members.length
    const gather = gathers(spec.vector.length, n, this.#gatherMaxBytes)
    const rank = spec.members.indexOf(spec.self)
    const succ = spec.members[(rank + 1) % n]
    const tag = `${short(spec.self)} r${spec.round}.${spec.attempt}`
    // a gathering round's vector is small: its time is hops, not bytes, and it stays float32
    const bf16 = spec.compression === 'bf16' && !gather && n > 1
    const exact = bf16 ? spec.exact ?? 0 : 0
    const plan: ExchangePlan = {
      round: spec.round,
      attempt: spec.attempt,
      members: [...spec.members],
      tag: spec.tag,
      rank,
      input: spec.vector,
      work: workFor(spec, n),
      blockElements: blockElementsFor(spec.vector.length, n, this.#blockElements, gather),
      gathered: gather ? this.#gatherBuffers(spec.vector.length, n) : null,
      compression: bf16 ? 'bf16' : 'none',
      exact,
      half: bf16 ? spec.vector.length - exact : 0,
      narrowed: bf16 ? this.#narrowBuffer(spec.vector.length, n) : null
    }
    const progress: ExchangeProgress = { bytesSent: 0, bytesReceived: 0, staleFrames: 0, out: null, reading: false, sending: false }

    const key = roundKey(spec.round, spec.attempt)
    const actor = createActor(this.#logic, {
      input: {
        round: spec.round,
        attempt: spec.attempt,
        members: n,
        gathers: gather,
        connectTimeoutMs: spec.connectTimeoutMs ?? this.#connectTimeoutMs,
        // a step moves a chunk, or in a gathering round a whole vector
        stepTimeoutMs: (spec.stepTimeoutMs ?? this.#stepTimeoutMs) + Math.ceil(spec.vector.byteLength / (gather ? 1 : n) / STEP_TIMEOUT_BYTES_PER_MS),
        notifyTimeoutMs: this.#notifyTimeoutMs
      }
    })
    const status: RingStatus = { round: spec.round, attempt: spec.attempt, members: [...spec.members], state: 'connecting', last: this.#status?.last ?? null }
    this.#status = status
    let previousState = ''
    actor.subscribe({
      next: snapshot => {
        const state = ringStateName(snapshot.value, snapshot.context)
        status.state = state
        if (state !== previousState) {
          previousState = state
          this.#log(`${tag}: ${state}`)
        }
      },
      error: () => {}
    })
    const onCancel = (): void => { actor.send({ type: 'round.cancel', code: 'cancelled', reason: 'cancelled by the caller' }) }
    signal?.addEventListener('abort', onCancel, { once: true })
    this.#actor = actor
    let result: AllReduceResult
    try {
      this.#live.set(key, { plan, progress, succ })
      actor.start()
      const output = await toPromise(actor)
      if (output.ok) {
        result = { ok: true, sum: plan.work, stats: stats(output.steps, progress) }
      } else {
        let reason = output.reason ?? 'aborted'
        if (output.code === 'timeout') {
          const pred = spec.members[(rank - 1 + n) % n]
          if (progress.reading) reason += ` (waiting for data from ${pred})`
          else if (progress.sending) reason += ` (waiting for ${succ} to take data)`
        }
        result = {
          ok: false,
          code: output.code ?? 'internal',
          cause: output.cause ?? output.code ?? 'internal',
          reason,
          ...(output.culprit !== null ? { culprit: output.culprit } : {}),
          stats: stats(output.steps, progress)
        }
      }
    } catch (err) {
      result = { ok: false, code: 'internal', cause: 'internal', reason: `ring machine failed: ${(err as Error).message}`, stats: stats(0, progress) }
    } finally {
      signal?.removeEventListener('abort', onCancel)
      this.#actor = null
      actor.stop()
      this.#live.delete(key)
    }
    if (!result.ok && progress.out !== null && (result.code === 'timeout' || result.code === 'peer-lost' || result.cause === 'timeout')) {
      // A connection that stalled may still read as open: after a partition that dropped packets, TCP's retry
      // timer has backed off to tens of seconds and nothing moves on it until it fires. The next round opens a
      // fresh one rather than queue behind it (closed then, not now: the abort notice may still be on its way).
      this.#stale.push(progress.out)
    }
    if (result.ok) {
      this.#log(`${tag}: ${n} members, ${spec.vector.byteLength} bytes in ${result.stats.ms.toFixed(1)} ms (${(result.stats.algbw / 1e6).toFixed(1)} MB/s algbw)`)
    } else {
      this.#log(`${tag}: aborted [${result.code}] ${result.reason}${result.culprit !== undefined ? ` (culprit ${short(result.culprit)})` : ''}`)
    }
    const { ok, stats: s } = result
    status.last = result.ok
      ? { round: spec.round, attempt: spec.attempt, ok, stats: s }
      : { round: spec.round, attempt: spec.attempt, ok, code: result.code, cause: result.cause, reason: result.reason, ...(result.culprit !== undefined ? { culprit: result.culprit } : {}), stats: s }
    return result
  }
}

/**
 * The block size of a round: the configured one, or the chunk where a chunk is smaller (a gathering round's chunk
 * is the vector). Receivers accept any block size.
 *
 * A chunk below the configured size is not cut further to pipeline the ring: each block costs both ends a wait
 * and a wake (and a record, a write, a read), and that costs more than the overlap gains. Cutting chunks into 4
 * blocks (the rule until 2026-12-04) against one, `bench:allreduce -- --peers 2,3 --sizes 0.8975` (the default
 * job's vector), 4 runs alternated on a 2-core VM: 2 members 5.15-5.40 → 4.33-4.62 ms a round (CPU 4.8-5.0 →
 * 4.1-4.3 ms), 3 members 13.1-13.5 → 9.5-11.1 ms; 2 blocks were no better than 4. `bench:scaling -- --peers 1,2`:
 * 2 peers 1.03 / 1.07x → 1.13 / 1.16x of the peer alone.
 */
function blockElementsFor (elements: number, members: number, configured: number, gather: boolean): number {
  const chunk = gather ? elements : Math.ceil(elements / members)
  return Math.max(1, Math.min(configured, chunk))
}

/**
 * Where a round sums: the caller's `into` when it fits, else a new array. Alone (N = 1) the sum is the vector
 * itself, copied; otherwise nothing is copied (the exchange writes every chunk of it). An `into` made by
 * `sumBuffer` (exchange.ts) is added and copied into with SIMD, as the swarm's rounds do.
 */
function workFor (spec: RoundSpec, n: number): Float32Array {
  const into = spec.into !== undefined && spec.into.length === spec.vector.length && spec.into !== spec.vector ? spec.into : null
  if (n > 1) return into ?? new Float32Array(spec.vector.length)
  if (into === null) return spec.vector.slice()
  into.set(spec.vector)
  return into
}


/** Why a round's data path is told to stop once the round is over: one reason for all (an abort without one makes a DOMException, with its stack, every round). */
const ROUND_OVER = new Error('the round is over')

/** What the machine's actors need of the round under way. */
interface LiveRound {
  plan: ExchangePlan
  progress: ExchangeProgress
  succ: string
}

function roundKey (round: number, attempt: number): string {
  return `${round}.${attempt}`
}

/** The error for a failed round, for callers that would rather throw: `if (!r.ok) throw roundError(r)`. */
export function roundError (result: Extract<AllReduceResult, { ok: false }>): RoundAbortedError {
  return new RoundAbortedError(`all-reduce round aborted [${result.code}]: ${result.reason}`, result.code, result.culprit)
}

/** The tail of a peer id, enough to tell members apart in logs. */
function short (id: string): string {
  return id.length > 10 ? `…${id.slice(-6)}` : id
}
