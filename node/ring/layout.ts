/**
 * Who sends and receives which chunk at which step. Pure arithmetic, shared by every member, so both ends of
 * a link agree on what a frame must say without negotiating it.
 *
 * The vector of L elements is cut into N chunks; chunk c has ⌊L/N⌋ elements, plus one for the first L mod N
 * chunks (so chunks may be empty when L < N). Steps 0 … N−2 are the reduce-scatter, N−1 … 2N−3 the all-gather.
 * At reduce-scatter step s, member i sends chunk (i − s) and adds into chunk (i − s − 1); after it, member i holds
 * the full sum of chunk (i + 1). At all-gather step s, it sends chunk (i + 1 − s) and overwrites chunk (i − s).
 * From step 1 on, the chunk sent at step t is the one received at step t − 1: each block can be forwarded as soon
 * as it has been received (and added), which is what lets sending, receiving and adding overlap.
 *
 * A small vector's round is hops, not bytes: 2(N−1) data steps and N−1 done tokens after them. Such a round
 * gathers whole vectors instead (`gathers`): N − 1 steps, at step t member i
 * sends the vector of member (i − t) (its own at step 0, then the one it received the step before) and receives
 * that of member (i − t − 1). Then each member sums the N vectors itself, in the order of the members' positions,
 * so every member computes the same float32 sum bit for bit (addition is commutative: with 2 members each adds
 * the other's vector to its own as it arrives). Each member sends (N − 1) · L elements instead of 2(N − 1)/N · L:
 * the same for 2 members, and little for a small vector.
 */
import { GATHER_MAX_BYTES } from '../../protocols/allreduce/index.ts'

export interface ChunkSpan {
  /** First element of the chunk in the vector. */
  start: number
  /** Elements in the chunk (0 when the vector is shorter than the ring). */
  length: number
}

export function chunkSpans (elements: number, members: number): ChunkSpan[] {
  const base = Math.floor(elements / members)
  const extra = elements % members
  const spans: ChunkSpan[] = []
  let start = 0
  for (let c = 0; c < members; c++) {
    const length = base + (c < extra ? 1 : 0)
    spans.push({ start, length })
    start += length
  }
  return spans
}

const mod = (a: number, n: number): number => ((a % n) + n) % n

/** Total steps of a round: N−1 reduce-scatter and N−1 all-gather. */
export function stepCount (members: number): number {
  return 2 * (members - 1)
}

/** Is step `step` part of the reduce-scatter (received blocks are added) rather than the all-gather (copied)? */
export function isReduceStep (step: number, members: number): boolean {
  return step < members - 1
}

export function sendChunk (rank: number, step: number, members: number): number {
  return isReduceStep(step, members) ? mod(rank - step, members) : mod(rank + 1 - (step - (members - 1)), members)
}

export function recvChunk (rank: number, step: number, members: number): number {
  return isReduceStep(step, members) ? mod(rank - step - 1, members) : mod(rank - (step - (members - 1)), members)
}

/** Elements of the vector each member sends in a round: the 2(N−1)/N of it that the ring's bandwidth bound says. */
export function elementsSent (elements: number, members: number, rank: number): number {
  const spans = chunkSpans(elements, members)
  let total = 0
  for (let t = 0; t < stepCount(members); t++) total += spans[sendChunk(rank, t, members)].length
  return total
}

/**
 * Whether a round of `members` over `elements` float32s gathers whole vectors (see above): while each member
 * would send at most `maxBytes` that way (GATHER_MAX_BYTES unless set; the hello says which way a member goes,
 * and neighbours that disagree abort). With `maxBytes` 0 no round gathers (tests and benchmarks).
 */
export function gathers (elements: number, members: number, maxBytes = GATHER_MAX_BYTES): boolean {
  return members >= 2 && elements * 4 * (members - 1) <= maxBytes
}

/** In a gathering round: the position of the member whose vector member `rank` sends at step `step` (0 … N−2). */
export function gatherSendOrigin (rank: number, step: number, members: number): number {
  return mod(rank - step, members)
}

/** In a gathering round: the position of the member whose vector member `rank` receives at step `step` (0 … N−2). */
export function gatherRecvOrigin (rank: number, step: number, members: number): number {
  return mod(rank - step - 1, members)
}
