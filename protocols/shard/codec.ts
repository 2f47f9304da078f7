/**
 * The frames of `/peer/shard/1.0.0` and their encoders and decoders. Integers
 * are little-endian. Every frame sits behind an unsigned varint length prefix
 * (protocols/common/framing.ts) and is never larger than MAX_FRAME_BYTES. The data and error frames, and
 * the answer's decoder, are those of every transfer protocol (protocols/common/transfer.ts).
 */
import {
  DESCRIPTION_KEY_BYTES, FRAME_HEADER, FRAME_REQUEST, HEADER_BYTES, KIND_DESCRIPTION, KIND_SHARD, MAX_DESCRIPTION_BYTES,
  MAX_FRAME_BYTES, MAX_SHARD_BYTES, REQUEST_HEADER_BYTES, SHARD_KEY_BYTES
} from './constants.ts'
import { FrameDecoder as CommonFrameDecoder, TRANSFER_ERROR_CODES, decodeTransferResponse } from '../common/index.ts'
import type { HeaderLayout, TransferErrorCode, TransferResponse } from '../common/index.ts'
import { InvalidMessageError } from './errors.ts'

export { encodeLengthPrefix, prefixed } from '../common/index.ts'
/** The data and error frames are those every transfer protocol shares. */
export { encodeData, encodeError } from '../common/index.ts'

/** Ask for a shard by the sha256 of its file, or a data set's description by the data set's id. */
export type ShardRequest =
  | { kind: 'shard', sha256: string }
  | { kind: 'description', datasetId: string }

/** Why a holder did not send what was asked for (the index is the wire value): not-found, unavailable, bad-request. */
export const ERROR_CODES = TRANSFER_ERROR_CODES
export type ErrorCode = TransferErrorCode

/** The size a header frame announces. */
export interface ShardHeader { size: number }
export type ShardResponse = TransferResponse<ShardHeader>

const HEX64 = /^[0-9a-f]{64}$/
const DATASET_ID = /^ds-([0-9a-f]{16})$/

/** The largest size a header may announce for what the request asked. */
export function maxSize (req: ShardRequest): number {
  return req.kind === 'shard' ? MAX_SHARD_BYTES : MAX_DESCRIPTION_BYTES
}

export function encodeRequest (req: ShardRequest): Uint8Array {
  if (req.kind === 'shard') {
    if (!HEX64.test(req.sha256)) throw new InvalidMessageError('a shard is asked for by a sha256 of 64 lower-case hex digits')
    const out = new Uint8Array(REQUEST_HEADER_BYTES + SHARD_KEY_BYTES)
    out[0] = FRAME_REQUEST
    out[1] = KIND_SHARD
    out.set(Buffer.from(req.sha256, 'hex'), REQUEST_HEADER_BYTES)
    return out
  }
  const m = DATASET_ID.exec(req.datasetId)
  if (m === null) throw new InvalidMessageError('a description is asked for by a data set id, ds- and 16 lower-case hex digits')
  const out = new Uint8Array(REQUEST_HEADER_BYTES + DESCRIPTION_KEY_BYTES)
  out[0] = FRAME_REQUEST
  out[1] = KIND_DESCRIPTION
  out.set(Buffer.from(m[1], 'hex'), REQUEST_HEADER_BYTES)
  return out
}

export function decodeRequest (frame: Uint8Array): ShardRequest {
  if (frame.byteLength < REQUEST_HEADER_BYTES || frame[0] !== FRAME_REQUEST) throw new InvalidMessageError('expected a request frame')
  const key = frame.subarray(REQUEST_HEADER_BYTES)
  if (frame[1] === KIND_SHARD) {
    if (key.byteLength !== SHARD_KEY_BYTES) throw new InvalidMessageError(`a shard request carries ${SHARD_KEY_BYTES} bytes of hash, not ${key.byteLength}`)
    return { kind: 'shard', sha256: Buffer.from(key).toString('hex') }
  }
  if (frame[1] === KIND_DESCRIPTION) {
    if (key.byteLength !== DESCRIPTION_KEY_BYTES) throw new InvalidMessageError(`a description request carries ${DESCRIPTION_KEY_BYTES} bytes of id, not ${key.byteLength}`)
    return { kind: 'description', datasetId: `ds-${Buffer.from(key).toString('hex')}` }
  }
  throw new InvalidMessageError(`unknown request kind ${frame[1]}`)
}

export function encodeHeader (size: number): Uint8Array {
  if (!Number.isSafeInteger(size) || size < 0) throw new InvalidMessageError('size must be a non-negative safe integer')
  const out = new Uint8Array(HEADER_BYTES)
  out[0] = FRAME_HEADER
  new DataView(out.buffer).setBigUint64(1, BigInt(size), true)
  return out
}

/** The header frame's size, a safe integer (what the request allows is the fetcher's check, `maxSize`). */
const HEADER: HeaderLayout<ShardHeader> = {
  bytes: HEADER_BYTES,
  decode: view => {
    const size = view.getBigUint64(1, true)
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidMessageError('announced size is not a safe integer')
    return { size: Number(size) }
  }
}

/** One response frame; InvalidMessageError on anything malformed or over the limits. */
export function decodeResponse (frame: Uint8Array): ShardResponse {
  return decodeTransferResponse(frame, HEADER)
}

/**
 * Cuts a byte stream into frames of at most MAX_FRAME_BYTES (or `maxFrameBytes`): the shared decoder of
 * protocols/common with this protocol's limit as its default.
 */
export class FrameDecoder extends CommonFrameDecoder {
  constructor (maxFrameBytes: number = MAX_FRAME_BYTES) {
    super(maxFrameBytes)
  }
}
