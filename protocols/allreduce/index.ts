/**
 * `/peer/allreduce/1.0.0`: the frames ring neighbours exchange during an all-reduce round, with their limits.
 * No I/O here: `node/ring` moves the frames; this folder says what bytes are valid.
 *
 * A sender's stream to its successor carries, for each round it takes part in, one hello (round, attempt,
 * vector length, its position, a hash of the ordered member list), then data frames in order (each names its
 * round, attempt, step, chunk, element offset and element count; where the round gathers whole vectors, the
 * chunk is the position of the member whose vector it is), then N−1 small done tokens that let every
 * member know that all the others hold the sum too; and, if it gives up, one abort frame instead.
 * Frames are length-prefixed (unsigned varint) and never larger than MAX_FRAME_BYTES.
 *
 * Where this folder sits among the others: docs/architecture.md (the ring itself: docs/ring.md).
 *
 * @example
 * const bytes = encodeHello({ round: 7, attempt: 0, members: 3, index: 1, elements: 1000, membersHash: membersHash(ids) })
 * const decoder = new FrameDecoder()
 * for (const frame of decoder.push(received)) {
 *   const f = decodeFrame(frame) // throws InvalidMessageError on anything malformed
 *   if (f.type === 'data') { … }
 * }
 */
import { FrameDecoder, decodeFrame } from './codec.ts'
import type { Frame } from './codec.ts'

export * from './constants.ts'
export {
  ABORT_CODES, FrameDecoder, assertLittleEndian, decodeFrame, encodeAbort, encodeData, encodeDataHeader, encodeDone,
  encodeHello, encodeIdent, encodeLengthPrefix, membersHash
} from './codec.ts'
export type { AbortCode, AbortFrame, DataFrame, DataHeader, DoneFrame, Frame, HelloFrame, IdentFrame } from './codec.ts'
export { InvalidMessageError, NotStartedError, RoundAbortedError, StreamClosedError, TimeoutError } from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'

/**
 * Decodes a byte stream into frames. Throws InvalidMessageError (and only that, for anything the bytes say)
 * on a bad prefix, an oversized or malformed frame, or a stream that ends inside a frame. Errors of the source
 * itself (a reset stream) pass through unchanged.
 */
export async function * decodeFrames (source: AsyncIterable<Uint8Array | Iterable<Uint8Array>>, maxFrameBytes?: number): AsyncGenerator<Frame> {
  const decoder = new FrameDecoder(maxFrameBytes)
  for await (const chunk of source) {
    const parts = chunk instanceof Uint8Array ? [chunk] : chunk
    for (const part of parts) {
      for (const frame of decoder.push(part)) yield decodeFrame(frame)
    }
  }
  decoder.end()
}
