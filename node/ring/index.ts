/**
 * The ring all-reduce: sums one Float32Array per member across an agreed, ordered member list, over direct
 * streams between ring neighbours. N−1 reduce-scatter steps and N−1 all-gather steps, each chunk sent in blocks
 * so that sending, receiving and adding overlap; each member sends 2(N−1)/N of the vector. The protocol's
 * steps are an xstate machine (`machine.ts`); the bytes move in a loop outside it (`exchange.ts`), over a
 * `RingTransport`: by default direct TCP connections keyed over libp2p, every byte in AES-256-GCM records
 * (`keyed-transport.ts`, `protocols/ring-key`); or libp2p streams; or plain TCP for reference. Frames:
 * `protocols/allreduce`.
 *
 * Who is in round r, and in which order, is decided elsewhere (the membership agreement); the ring only checks
 * that neighbours agree (a hash of the list in each round's hello) and aborts otherwise.
 *
 * @example
 * const ring = new Ring({ transport: createKeyedRingTransport(node, { host: listenHostOf(listen) }), logger: msg => log.debug(msg) })
 * await ring.start()                       // opens the data-plane listener, registers /peer/ring-key/1.0.0
 * const result = await ring.run({ round: 12, attempt: 0, members, self: node.peerId.toString(), vector: grads })
 * if (result.ok) apply(result.sum)         // the same sum on every member
 * else log.warn({ code: result.code, culprit: result.culprit }, result.reason) // no one applies anything
 * await ring.stop()
 *
 * Contract of `run`:
 * - It never throws for a failed round; it returns `{ ok: false, code, cause, reason, culprit? }` and the
 *   input vector is untouched (`roundError(result)` turns it into a RoundAbortedError for those who throw).
 * - A neighbour that is lost, slower than the step timeout, or sends a bad frame (NaN or Inf, wrong
 *   round/step/chunk/offset/length, oversized) makes the round abort on every member within about one step
 *   timeout; the member that sent the bad frame (or was lost) is named as `culprit`, on every member
 *   (abort frames pass it on, with the first member's `cause`). A member returns `ok: true` only once the done
 *   tokens say every other member holds the sum too (see docs/ring.md for the one narrow exception).
 * - Rounds run one at a time per Ring; (round, attempt) must increase from one run to the next (a retry is a
 *   new attempt). Frames of earlier rounds still on a stream are skipped; a hello of a later round from the
 *   predecessor means it gave up on this one: this round aborts and the frame is kept for the next run. Nothing
 *   is read ahead, so a neighbour that is ahead is held back by the transport's flow control, not buffered.
 *
 * The design in full: docs/ring.md. Where this folder sits among the others: docs/architecture.md.
 */
export { Ring, roundError } from './ring.ts'
export type { AllReduceResult, AllReduceStats, RingComponents, RingInit, RingStatus, RoundSpec } from './ring.ts'
export { createLibp2pRingTransport } from './libp2p-transport.ts'
export type { Libp2pRingTransportOptions, RingLibp2p } from './libp2p-transport.ts'
export { KEYED_BLOCK_BYTES, createKeyedRingTransport, listenHostOf } from './keyed-transport.ts'
export type { KeyedLibp2p, KeyedRingTransport, KeyedRingTransportOptions, KeyedTransportCounters } from './keyed-transport.ts'
export { createTcpRingTransport } from './tcp-transport.ts'
export type { TcpAddress, TcpRingTransport, TcpRingTransportOptions } from './tcp-transport.ts'
export type { InboundChannel, OutboundChannel, RingTransport } from './transport.ts'
export { ringMachine, ringStateName } from './machine.ts'
export type { AbortNotice, RingContext, RingEvent, RingInput, RingOutput } from './machine.ts'
export { chunkSpans, elementsSent, gatherRecvOrigin, gatherSendOrigin, gathers, recvChunk, sendChunk, stepCount } from './layout.ts'
/** The data path's inner loop (add with a NaN/Inf check), exported for benchmarks. */
export { addChecked } from './exchange.ts'
/** Sum buffers (a round's `into`) that the data path adds into with SIMD. */
export { sumBuffer } from './exchange.ts'
export { simdKernelsOf } from '../common/simd-floats.ts'
export type { ChunkSpan } from './layout.ts'
export type { AbortCode } from '../../protocols/allreduce/index.ts'
export { RoundAbortedError } from '../../protocols/allreduce/index.ts'
