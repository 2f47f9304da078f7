/**
 * The byte loop of one round, outside any machine: open the channel to the successor and send a hello, find
 * the predecessor's hello for this round, then run two loops at once until every step is done:
 *
 * - the receiver reads the predecessor's data frames in order, checks every field and every value, and adds
 *   the block into the working vector (reduce-scatter) or copies it there (all-gather); in a round that
 *   gathers whole vectors (layout.ts), it keeps each vector (2 members: adds it to the caller's), and the
 *   vectors are summed in the members' order once all are here;
 * - the sender walks its chunks block by block; from step 1 on a block goes out as soon as the receiver has
 *   finished the same span of the previous step, so a block is received, added and forwarded while the next
 *   one is still arriving.
 *
 * Then it passes the done tokens round (see `commit`). It reports to the machine (`ring.connected`,
 * `step.done`, `round.committed`, `peer.lost`, `frame.invalid`, …) and stops,
 * without another word, when its signal aborts. It sums into a working vector of its own (never the caller's,
 * which it only reads), so an aborted round leaves nothing behind: no one ever sees a partial sum.
 */
import {
  InvalidMessageError, MAX_BLOCK_BYTES, decodeFrame, encodeDataHeader, encodeDone, encodeHello, membersHash
} from '../../protocols/allreduce/index.ts'
import type { Compression, Frame } from '../../protocols/allreduce/index.ts'
import { firstNonFinite, narrowFloats, simdFloats, simdKernelsOf, widenFloats } from '../common/simd-floats.ts'
import type { NarrowRoom } from '../common/simd-floats.ts'
import { chunkSpans, gatherRecvOrigin, gatherSendOrigin, isReduceStep, recvChunk, sendChunk, stepCount } from './layout.ts'
import type { RingEvent } from './machine.ts'
import type { InboundChannel, OutboundChannel, RingTransport } from './transport.ts'

export interface ExchangePlan {
  round: number
  attempt: number
  members: readonly string[]
  /** Hashed with the member list into the hello (RoundSpec.tag). */
  tag?: string
  rank: number
  /** The caller's vector: read, never written (step 0 sends from it, the adding reads it). */
  input: Float32Array
  /**
   * The working vector, of the same length (never `input` itself). Nothing is copied into it up front: every
   * chunk is first written by the step that receives it (a reduce step writes input + received, an all-gather
   * step the received sum), and by the end every chunk has been written. A sum buffer (`sumBuffer`) is added
   * and copied into with SIMD; any other array with the loops below.
   */
  work: Float32Array
  blockElements: number
  /**
   * Where the round gathers whole vectors (layout.ts `gathers`): with 3 or more members, one buffer of the
   * vector's length per position, where the other members' vectors arrive (this member's own entry is unused);
   * empty with 2 members (each adds the other's vector into `work` as it arrives). Null: the round reduces chunks.
   */
  gathered: Float32Array[] | null
  /** What the hello says: `bf16` when the vector's first `half` elements travel as bfloat16 (RoundSpec.compression). */
  compression: Compression
  /** The elements at the vector's end that stay float32 in a bf16 round (0 otherwise). */
  exact: number
  /** Elements 0 … half − 1 travel as bfloat16 (elements − exact in a bf16 round, 0 otherwise). */
  half: number
  /** A bf16 round: where each step's blocks are narrowed before they are sent (a chunk's room per step); else null. */
  narrowed: NarrowRoom | null
}

export interface ExchangeProgress {
  bytesSent: number
  bytesReceived: number
  /** Stale frames (of earlier rounds or attempts) skipped before this round's hello. */
  staleFrames: number
  /** The outbound channel once open (the abort notice goes there). */
  out: OutboundChannel | null
  /** A read from the predecessor is under way (the receiver waits for data). */
  reading: boolean
  /** A send to the successor is under way (it has not taken the frame yet). */
  sending: boolean
}

/** Compares (round, attempt) pairs: negative when a is earlier. */
function compareRounds (a: { round: number, attempt: number }, b: { round: number, attempt: number }): number {
  return a.round !== b.round ? a.round - b.round : a.attempt - b.attempt
}

/** The data path stopped: `event` says why, for the machine. */
class Stop extends Error {
  readonly event: RingEvent
  constructor (event: RingEvent) {
    super(event.type)
    this.event = event
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((x, i) => x === b[i])

/**
 * Adds `src` into `dst` at `at`; returns the index of the first non-finite value of `src`, or −1. The loop has
 * no branch: it sums `v − v`, which is 0 for every finite v and NaN (for good) once any v is NaN or ±Inf, and
 * looks for the culprit only then. On a bad value the working vector is left added (bad values included),
 * which is harmless: the round aborts and it is thrown away.
 */
export function addChecked (dst: Float32Array, at: number, src: Float32Array): number {
  const n = src.length
  const d = dst.subarray(at, at + n)
  let bad = 0
  for (let k = 0; k < n; k++) {
    const v = src[k]
    bad += v - v
    d[k] += v
  }
  return bad === 0 ? -1 : firstNonFinite(src, src.length)
}

/**
 * Writes `base + src` into `dst` at `at` (all three at the same offset `at`, `src` from 0); returns the index of
 * the first non-finite value of `src`, or −1 (as addChecked: a reduce step's first touch of a chunk, so that the
 * caller's vector need not be copied into the working one first).
 */
export function addCheckedFrom (dst: Float32Array, base: Float32Array, at: number, src: Float32Array): number {
  const n = src.length
  const d = dst.subarray(at, at + n)
  const b = base.subarray(at, at + n)
  let bad = 0
  for (let k = 0; k < n; k++) {
    const v = src[k]
    bad += v - v
    d[k] = b[k] + v
  }
  return bad === 0 ? -1 : firstNonFinite(src, src.length)
}

/**
 * Copies `src` into `dst` at `at`; returns the index of the first non-finite value, or −1 (one pass, as
 * addChecked; on a bad value `dst` holds it: the round aborts and it is thrown away).
 */
export function copyChecked (dst: Float32Array, at: number, src: Float32Array): number {
  const n = src.length
  const d = dst.subarray(at, at + n)
  let bad = 0
  for (let k = 0; k < n; k++) {
    const v = src[k]
    bad += v - v
    d[k] = v
  }
  return bad === 0 ? -1 : firstNonFinite(src, src.length)
}

/**
 * A zeroed float32 array of `length` for rounds to sum into (their `into`, reused round after round): in a wasm
 * memory of its own with room to stage a block, where the receiver adds and copies with SIMD
 * (common/simd-floats.ts, about 3x these loops); a plain array where no such memory can be had. Its `buffer` is
 * larger than the vector.
 */
export function sumBuffer (length: number): Float32Array {
  return simdFloats(length, MAX_BLOCK_BYTES)
}

/** The payload as floats: a view when it is 4-byte aligned, else a copy into `scratch`. */
function floatsOf (payload: Uint8Array, scratch: { buf: Float32Array }): Float32Array {
  const count = payload.byteLength >>> 2
  if ((payload.byteOffset & 3) === 0) return new Float32Array(payload.buffer, payload.byteOffset, count)
  if (scratch.buf.length < count) scratch.buf = new Float32Array(count)
  const view = scratch.buf.subarray(0, count)
  new Uint8Array(view.buffer, view.byteOffset, payload.byteLength).set(payload)
  return view
}

/**
 * Runs the data path of one round. Never throws: every way it can end is an event for the machine, sent with
 * `emit` (`ring.connected`, `step.done`s, or one failure); after a failure, or once `signal` aborts, it is silent.
 */
export async function runExchange (
  transport: RingTransport,
  plan: ExchangePlan,
  progress: ExchangeProgress,
  emit: (event: RingEvent) => void,
  signal: AbortSignal
): Promise<void> {
  const n = plan.members.length
  if (n === 1) {
    emit({ type: 'ring.connected' })
    return
  }
  const local = new AbortController()
  const onAbort = (): void => { local.abort(signal.reason) }
  signal.addEventListener('abort', onAbort, { once: true })
  let failed = false
  const stop = (event: RingEvent): void => {
    if (failed || signal.aborted) return
    failed = true
    local.abort(new Stop(event))
    emit(event)
  }
  try {
    const succ = plan.members[(plan.rank + 1) % n]
    const pred = plan.members[(plan.rank - 1 + n) % n]
    const hash = membersHash(plan.members, plan.tag)
    // The sender starts once its own hello is out: step 0's blocks need nothing from the predecessor, so they
    // travel with (not one hop after) the hellos. The receiver starts once the predecessor's hello checked out.
    const outbound = openSuccessor(transport, plan, succ, hash, progress, local.signal)
    const inbound = findHello(transport, plan, pred, hash, progress, local.signal)
    outbound.catch(() => {})
    inbound.catch(() => {})
    await transfer(plan, outbound, inbound, progress, emit, local.signal)
    if (plan.gathered !== null && n > 2) sumInOrder(plan)
    await commit(plan, await outbound, await inbound, progress, local.signal)
    if (!local.signal.aborted) emit({ type: 'round.committed' })
  } catch (err) {
    if (err instanceof Stop) stop(err.event)
    else if (!local.signal.aborted) stop({ type: 'exchange.failed', error: String((err as Error)?.stack ?? err) })
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

async function openSuccessor (transport: RingTransport, plan: ExchangePlan, succ: string, hash: Uint8Array, progress: ExchangeProgress, signal: AbortSignal): Promise<OutboundChannel> {
  let out: OutboundChannel
  try {
    out = await transport.outbound(succ, signal)
  } catch (err) {
    if (signal.aborted) throw signal.reason
    throw new Stop({ type: 'peer.lost', peer: succ, reason: (err as Error).message })
  }
  progress.out = out
  const hello = encodeHello({ round: plan.round, attempt: plan.attempt, members: plan.members.length, index: plan.rank, elements: plan.work.length, gathers: plan.gathered !== null, compression: plan.compression, exact: plan.exact, membersHash: hash })
  await sendFrame(out, [hello], progress, signal)
  return out
}

/**
 * Sends one frame to the successor; a failed channel ends the round (`peer.lost`). Nothing once the round is
 * over: the channel outlives it, and a frame of an aborted round written after the next round's hello would
 * abort that one too (a sender whose sends never wait, such as step 0 of a gathering round, would otherwise
 * go on writing the caller's vector after its round ended).
 */
async function sendFrame (out: OutboundChannel, parts: Uint8Array[], progress: ExchangeProgress, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw signal.reason
  progress.sending = true
  try {
    await out.send(parts, signal)
  } catch (err) {
    if (signal.aborted) throw signal.reason
    throw new Stop({ type: 'peer.lost', peer: out.peer, reason: (err as Error).message })
  } finally {
    progress.sending = false
  }
  for (const part of parts) progress.bytesSent += part.byteLength
}

/** Reads one frame for this round, mapping what can go wrong to the event that ends the round. */
async function readFrame (inbound: InboundChannel, progress: ExchangeProgress, signal: AbortSignal): Promise<{ bytes: Uint8Array, frame: Frame }> {
  let bytes: Uint8Array | null
  progress.reading = true
  try {
    bytes = await inbound.read(signal)
  } catch (err) {
    if (signal.aborted) throw signal.reason
    if (err instanceof InvalidMessageError && err.kind !== 'truncated') throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: err.message })
    throw new Stop({ type: 'peer.lost', peer: inbound.peer, reason: (err as Error).message })
  } finally {
    progress.reading = false
  }
  if (bytes === null) throw new Stop({ type: 'peer.lost', peer: inbound.peer, reason: 'stream ended' })
  progress.bytesReceived += bytes.byteLength
  try {
    return { bytes, frame: decodeFrame(bytes) }
  } catch (err) {
    if (err instanceof InvalidMessageError) throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: err.message })
    throw err
  }
}

/**
 * Skips what is left of earlier rounds on the predecessor's stream and checks its hello for this one. A stream
 * that ends before the hello is replaced by the next one the predecessor opens (it dials again after a failure).
 */
async function findHello (transport: RingTransport, plan: ExchangePlan, pred: string, hash: Uint8Array, progress: ExchangeProgress, signal: AbortSignal): Promise<InboundChannel> {
  while (true) {
    const inbound = await transport.inbound(pred, signal)
    try {
      while (true) {
        const { bytes, frame } = await readFrame(inbound, progress, signal)
        if (frame.type === 'ident') throw new Stop({ type: 'frame.invalid', peer: pred, reason: 'ident frame inside the stream' })
        const order = compareRounds(frame, plan)
        if (order < 0) {
          progress.staleFrames++
          continue
        }
        if (order > 0) {
          inbound.unread(bytes)
          throw new Stop({ type: 'peer.aborted', peer: pred, cause: 'peer-aborted', reason: `it is already in round ${frame.round} attempt ${frame.attempt}` })
        }
        if (frame.type === 'abort') throw new Stop({ type: 'peer.aborted', peer: pred, cause: frame.code, reason: `[${frame.code}] ${frame.reason}`, ...(frame.culprit !== undefined ? { culprit: frame.culprit } : {}) })
        if (frame.type !== 'hello') throw new Stop({ type: 'frame.invalid', peer: pred, reason: `${frame.type} frame before the hello` })
        const expectedIndex = (plan.rank - 1 + plan.members.length) % plan.members.length
        if (!sameBytes(frame.membersHash, hash) || frame.members !== plan.members.length) {
          throw new Stop({ type: 'members.mismatch', peer: pred, reason: 'different member list' })
        }
        if (frame.index !== expectedIndex) throw new Stop({ type: 'members.mismatch', peer: pred, reason: `it is at position ${frame.index}, expected ${expectedIndex}` })
        if (frame.elements !== plan.work.length) throw new Stop({ type: 'members.mismatch', peer: pred, reason: `vector of ${frame.elements} elements, this member has ${plan.work.length}` })
        if (frame.gathers !== (plan.gathered !== null)) {
          const how = (gathers: boolean): string => gathers ? 'gathers whole vectors' : 'reduces chunks'
          throw new Stop({ type: 'members.mismatch', peer: pred, reason: `it ${how(frame.gathers)}, this member ${how(plan.gathered !== null)}` })
        }
        if (frame.compression !== plan.compression || frame.exact !== plan.exact) {
          const how = (c: Compression, exact: number): string => c === 'bf16' ? `sends bfloat16 (its last ${exact} elements float32)` : 'sends float32'
          throw new Stop({ type: 'members.mismatch', peer: pred, reason: `it ${how(frame.compression, frame.exact)}, this member ${how(plan.compression, plan.exact)}` })
        }
        return inbound
      }
    } catch (err) {
      // A stream that ended or broke before this round's hello: the predecessor dials again after a failure,
      // so wait for its next stream (until the connect timeout); unless this member's own channel to its
      // successor broke too (its own side is cut off: waiting would only run into the timeout).
      const ownSideUp = progress.out === null || progress.out.open
      if (err instanceof Stop && err.event.type === 'peer.lost' && !inbound.open && ownSideUp && !signal.aborted) continue
      throw err
    }
  }
}

/**
 * A frame other than the one expected. Only an abort of this round, or the hello of a later one (the
 * predecessor gave up on this one), is the predecessor's right; anything else is a protocol violation.
 */
function unexpected (plan: ExchangePlan, inbound: InboundChannel, bytes: Uint8Array, frame: Frame, where: string): never {
  if (frame.type === 'abort' && frame.round === plan.round && frame.attempt === plan.attempt) {
    throw new Stop({ type: 'peer.aborted', peer: inbound.peer, cause: frame.code, reason: `[${frame.code}] ${frame.reason}`, ...(frame.culprit !== undefined ? { culprit: frame.culprit } : {}) })
  }
  if (frame.type === 'hello' && compareRounds(frame, plan) > 0) {
    inbound.unread(bytes)
    throw new Stop({ type: 'peer.aborted', peer: inbound.peer, cause: 'peer-aborted', reason: `it is already in round ${frame.round} attempt ${frame.attempt}` })
  }
  throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `${frame.type} frame ${where}` })
}

/**
 * The done tokens: count 1 once this member holds the sum, then count k+1 for each count k from the
 * predecessor; count N−1 from the predecessor means every other member holds the sum too.
 */
async function commit (plan: ExchangePlan, out: OutboundChannel, inbound: InboundChannel, progress: ExchangeProgress, signal: AbortSignal): Promise<void> {
  const n = plan.members.length
  const send = async (count: number): Promise<void> => {
    await sendFrame(out, [encodeDone({ round: plan.round, attempt: plan.attempt, count })], progress, signal)
  }
  await send(1)
  for (let count = 1; count <= n - 1; count++) {
    const { bytes, frame } = await readFrame(inbound, progress, signal)
    if (frame.type !== 'done' || frame.round !== plan.round || frame.attempt !== plan.attempt || frame.count !== count) {
      unexpected(plan, inbound, bytes, frame, `where done token ${count} of round ${plan.round} attempt ${plan.attempt} was due`)
    }
    if (count < n - 1) await send(count + 1)
  }
}

/** What one step sends and receives: the frames' chunk field, the span of the vector, where it comes from and goes. */
interface StepPlan {
  send: { chunk: number, start: number, length: number, from: Float32Array }
  recv: { chunk: number, start: number, length: number }
  /**
   * What a received block becomes: `add`: input + block into `into` (`work`); `copy`: the block into `into` (`work`,
   * or a gathering round's buffer for that member). Called straight in the receiver's loop: the adding loops
   * inline there (a closure per step left them 8% slower at 16 MiB).
   */
  take: 'add' | 'copy'
  into: Float32Array
}

/**
 * The steps of a round. Reducing chunks (layout.ts): a reduce step's chunk is first touched by the step that
 * receives it (its sum is the caller's part plus the block), an all-gather step copies the chunk's sum; step 0
 * sends the caller's own chunk, later steps what the step before received. Gathering whole vectors: each is kept
 * (2 members: added to the caller's at once), step 0 sends the caller's vector, later steps the one received before.
 */
function stepPlans (plan: ExchangePlan): StepPlan[] {
  const n = plan.members.length
  const { rank, input, work, gathered } = plan
  const elements = work.length
  if (gathered !== null) {
    return Array.from({ length: n - 1 }, (_, t): StepPlan => {
      const sent = gatherSendOrigin(rank, t, n)
      const origin = gatherRecvOrigin(rank, t, n)
      return {
        send: { chunk: sent, start: 0, length: elements, from: t === 0 ? input : gathered[sent] },
        recv: { chunk: origin, start: 0, length: elements },
        take: n === 2 ? 'add' : 'copy',
        into: n === 2 ? work : gathered[origin]
      }
    })
  }
  const spans = chunkSpans(elements, n)
  return Array.from({ length: stepCount(n) }, (_, t): StepPlan => {
    const out = spans[sendChunk(rank, t, n)]
    const chunk = recvChunk(rank, t, n)
    return {
      send: { chunk: sendChunk(rank, t, n), start: out.start, length: out.length, from: t === 0 ? input : work },
      recv: { chunk, start: spans[chunk].start, length: spans[chunk].length },
      take: isReduceStep(t, n) ? 'add' : 'copy',
      into: work
    }
  })
}

/**
 * A gathering round of 3 or more members, once every vector is here: `work` becomes their sum, added in the
 * order of the members' positions (the caller's own vector at its place), the same order on every member, so
 * that every member holds the same float32 sum bit for bit. The received vectors were checked as they came.
 */
function sumInOrder (plan: ExchangePlan): void {
  const { work, input, rank } = plan
  const gathered = plan.gathered as Float32Array[]
  const vectorOf = (i: number): Float32Array => i === rank ? input : gathered[i]
  work.set(vectorOf(0))
  for (let i = 1; i < plan.members.length; i++) {
    const v = vectorOf(i)
    for (let k = 0; k < work.length; k++) work[k] += v[k]
  }
}

/**
 * The two loops of the data path, run until every step is done: the sender once the successor's channel is open,
 * the receiver once the predecessor's hello has checked out; `ring.connected` once both are.
 */
async function transfer (plan: ExchangePlan, outbound: Promise<OutboundChannel>, inbound: Promise<InboundChannel>, progress: ExchangeProgress, emit: (event: RingEvent) => void, signal: AbortSignal): Promise<void> {
  const plans = stepPlans(plan)
  const steps = plans.length
  const input = plan.input
  const half = plan.half
  // the machine numbers a gathering round's steps as the all-gather's: N − 1 … 2N − 3
  const firstStep = plan.gathered !== null ? plan.members.length - 1 : 0

  // Receiver progress: the step being received and the elements of it received so far.
  let recvStep = 0
  let recvOffset = 0
  let waiter: { step: number, upto: number, resolve: () => void } | null = null
  const received = (step: number, upto: number): boolean => recvStep > step || (recvStep === step && recvOffset >= upto)
  const wake = (): void => {
    if (waiter !== null && received(waiter.step, waiter.upto)) {
      const { resolve } = waiter
      waiter = null
      resolve()
    }
  }
  let stepsSent = 0
  let stepsReceived = 0
  let stepsReported = 0
  let connected = false
  const report = (): void => {
    while (connected && stepsReported < Math.min(stepsSent, stepsReceived) && !signal.aborted) {
      emit({ type: 'step.done', step: firstStep + stepsReported++ })
    }
  }
  const aborted = new Promise<never>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason)
    signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
  })
  aborted.catch(() => {})

  const receiver = async (channel: Promise<InboundChannel>): Promise<void> => {
    const inbound = await channel
    const scratch = { buf: new Float32Array(0) }
    const wide = { buf: new Float32Array(0) }
    const simd = simdKernelsOf(plan.work)
    for (let t = 0; t < steps; t++) {
      const { recv: { chunk, start, length }, take, into } = plans[t]
      while (recvOffset < length) {
        const { bytes, frame } = await readFrame(inbound, progress, signal)
        if (frame.type !== 'data') unexpected(plan, inbound, bytes, frame, `in the middle of step ${t}`)
        const where = `step ${t} chunk ${chunk} offset ${recvOffset}`
        if (frame.round !== plan.round || frame.attempt !== plan.attempt) {
          throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `data of round ${frame.round} attempt ${frame.attempt} in round ${plan.round} attempt ${plan.attempt}` })
        }
        if (frame.step !== t || frame.chunk !== chunk || frame.offset !== recvOffset) {
          throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `expected ${where}, got step ${frame.step} chunk ${frame.chunk} offset ${frame.offset}` })
        }
        if (frame.length > length - recvOffset) {
          throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `${frame.length} elements at ${where} overrun the chunk of ${length}` })
        }
        const at = start + recvOffset
        if (frame.bf16 !== at < half || (frame.bf16 && at + frame.length > half)) {
          const due = at < half ? `bfloat16 up to element ${half}` : 'float32'
          throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `${frame.bf16 ? 'bfloat16' : 'float32'} elements ${at} … ${at + frame.length - 1} at ${where}, where ${due} is due` })
        }
        // a bfloat16 block is widened (exactly) as it is taken
        let bad: number
        if (simd !== null && into === plan.work) {
          if (frame.bf16) bad = take === 'add' ? simd.addFromBf16(at, input, frame.payload) : simd.copyBf16(at, frame.payload)
          else bad = take === 'add' ? simd.addFrom(at, input, frame.payload) : simd.copy(at, frame.payload)
        } else {
          const values = frame.bf16 ? widenFloats(frame.payload, wide) : floatsOf(frame.payload, scratch)
          bad = take === 'add' ? addCheckedFrom(into, input, at, values) : copyChecked(into, at, values)
        }
        if (bad >= 0) {
          const value = (frame.bf16 ? widenFloats(frame.payload, wide) : floatsOf(frame.payload, scratch))[bad]
          throw new Stop({ type: 'frame.invalid', peer: inbound.peer, reason: `non-finite value (${value}) at element ${recvOffset + bad} of chunk ${chunk}, step ${t}` })
        }
        recvOffset += frame.length
        wake()
      }
      recvStep = t + 1
      recvOffset = 0
      stepsReceived++
      wake()
      report()
    }
  }

  const sender = async (channel: Promise<OutboundChannel>): Promise<void> => {
    const out = await channel
    const n = plan.members.length
    const room = plan.narrowed === null ? 0 : plan.narrowed.length / stepCount(n)
    const kernels = simdKernelsOf(plan.work)
    for (let t = 0; t < steps; t++) {
      const { chunk, start, length, from } = plans[t].send
      let count = 0
      for (let offset = 0; offset < length; offset += count) {
        const at = start + offset
        const bf16 = at < half
        // a block is all bfloat16 or all float32
        count = Math.min(plan.blockElements, length - offset, bf16 ? half - at : Infinity)
        if (t > 0 && !received(t - 1, offset + count)) {
          await Promise.race([new Promise<void>(resolve => { waiter = { step: t - 1, upto: offset + count, resolve } }), aborted])
        }
        const header = encodeDataHeader({ round: plan.round, attempt: plan.attempt, step: t, chunk, offset, length: count, bf16 })
        let payload: Uint8Array
        if (bf16) {
          // the first all-gather step sends the chunk this member finished summing: it keeps what it sends
          if (t === n - 1) {
            if (kernels !== null && from === plan.work) kernels.roundBf16(at, count)
            else narrowFloats(from, at, count, new Uint16Array(count), true)
          }
          payload = (plan.narrowed as NarrowRoom).narrow(from, at, count, t * room + offset)
        } else {
          payload = new Uint8Array(from.buffer, from.byteOffset + at * 4, count * 4)
        }
        await sendFrame(out, [header, payload], progress, signal)
      }
      if (t === steps - 1) {
        // The caller gets the working vector back as the sum: nothing of it may still be in the channel's hands.
        progress.sending = true
        try {
          await out.flush(signal)
        } catch (err) {
          if (signal.aborted) throw signal.reason
          throw new Stop({ type: 'peer.lost', peer: out.peer, reason: (err as Error).message })
        } finally {
          progress.sending = false
        }
      }
      stepsSent++
      report()
    }
  }

  // Whichever loop fails first ends the round; the other one is stopped through the shared signal.
  await new Promise<void>((resolve, reject) => {
    let pending = 3
    const done = (): void => { if (--pending === 0) resolve() }
    Promise.all([outbound, inbound]).then(() => {
      if (signal.aborted) {
        reject(signal.reason)
        return
      }
      connected = true
      emit({ type: 'ring.connected' })
      report()
      done()
    }, reject)
    receiver(inbound).then(done, reject)
    sender(outbound).then(done, reject)
  })
}
