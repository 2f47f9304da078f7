/**
 * `/peer/shard/1.0.0`: fetch a data set's shard by the sha256 of its file, or
 * its description by the data set's id, from a peer that holds it. No I/O
 * here: `node/shard-transfer` serves and fetches; this folder says what bytes are valid.
 *
 * One request per stream. The asker sends one request frame
 * (type, kind, key) and closes its side; the holder answers with an error
 * frame, or with a header frame (the size) followed by data frames of at most
 * CHUNK_BYTES until that many bytes have been sent, then closes. The asker
 * hashes what it receives and keeps it only if the hash is the one it asked
 * for; the holder is trusted for nothing.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * stream.sink([prefixed(encodeRequest({ kind: 'shard', sha256 }))])
 * for await (const frame of decodeFrames(stream.source)) {
 *   const r = decodeResponse(frame) // throws InvalidMessageError on anything malformed
 * }
 */
import { decodeFrames as decodeCommonFrames } from '../common/index.ts'
import type { ByteSource } from '../common/index.ts'
import { MAX_FRAME_BYTES } from './constants.ts'

export * from './constants.ts'
export {
  ERROR_CODES, FrameDecoder, decodeRequest, decodeResponse, encodeData, encodeError, encodeHeader, encodeLengthPrefix,
  encodeRequest, maxSize, prefixed
} from './codec.ts'
export type { ErrorCode, ShardHeader, ShardRequest, ShardResponse } from './codec.ts'
export {
  InvalidMessageError, NotStartedError, ShardFetchError, ShardHashMismatchError, ShardNotFoundError, ShardUnavailableError,
  TimeoutError
} from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'

/**
 * Decodes a byte stream into frames (not yet interpreted) of at most MAX_FRAME_BYTES (or `maxFrameBytes`).
 * Throws InvalidMessageError, and only that, for anything the bytes say; errors of the source itself (a reset
 * stream) pass through unchanged.
 */
export function decodeFrames (source: ByteSource, maxFrameBytes: number = MAX_FRAME_BYTES): AsyncGenerator<Uint8Array> {
  return decodeCommonFrames(source, maxFrameBytes)
}
