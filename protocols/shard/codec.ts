/**
 * The frames of `/peer/shard/1.0.0` and their encoders and decoders. Integers
 * are little-endian. Every frame sits behind an unsigned varint length prefix
 * (protocols/common/framing.ts) and is never larger than MAX_FRAME_BYTES.
 */
import {
  CHUNK_BYTES, DESCRIPTION_KEY_BYTES, ERROR_HEADER_BYTES, FRAME_DATA, FRAME_ERROR, FRAME_HEADER, FRAME_REQUEST, HEADER_BYTES,
  KIND_DESCRIPTION, KIND_SHARD, MAX_DESCRIPTION_BYTES, MAX_FRAME_BYTES, MAX_REASON_BYTES, MAX_SHARD_BYTES, REQUEST_HEADER_BYTES,
  SHARD_KEY_BYTES
} from './constants.ts'
import { FrameDecoder as CommonFrameDecoder } from '../common/index.ts'
import { InvalidMessageError } from './errors.ts'

export { encodeLengthPrefix, prefixed } from '../common/index.ts'

/** Ask for a shard by the sha256 of its file, or a data set's description by the data set's id. */
export type ShardRequest =
  | { kind: 'shard', sha256: string }
  | { kind: 'description', datasetId: string }

/** Why a holder did not send what was asked for (the index is the wire value). */
export const ERROR_CODES = [
  'not-found', // the holder does not have it
  'unavailable', // it has it but could not read it
  'bad-request' // the request frame was not valid
] as const
export type ErrorCode = typeof ERROR_CODES[number]

export type ShardResponse =
  | { type: 'header', size: number }
  | { type: 'data', bytes: Uint8Array }
  | { type: 'error', code: ErrorCode, reason: string }

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

/** A data frame around `bytes` (1 … CHUNK_BYTES of them). */
export function encodeData (bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength === 0 || bytes.byteLength > CHUNK_BYTES) throw new InvalidMessageError(`a data frame carries 1 … ${CHUNK_BYTES} bytes`)
  const out = new Uint8Array(1 + bytes.byteLength)
  out[0] = FRAME_DATA
  out.set(bytes, 1)
  return out
}

export function encodeError (code: ErrorCode, reason: string): Uint8Array {
  let text = Buffer.from(reason, 'utf8')
  if (text.byteLength > MAX_REASON_BYTES) text = Buffer.from(reason.slice(0, MAX_REASON_BYTES / 4), 'utf8')
  const out = new Uint8Array(ERROR_HEADER_BYTES + text.byteLength)
  out[0] = FRAME_ERROR
  out[1] = ERROR_CODES.indexOf(code)
  new DataView(out.buffer).setUint16(2, text.byteLength, true)
  out.set(text, ERROR_HEADER_BYTES)
  return out
}

export function decodeResponse (frame: Uint8Array): ShardResponse {
  if (frame.byteLength < 1 || frame.byteLength > MAX_FRAME_BYTES) throw new InvalidMessageError('response frame size out of bounds')
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  switch (frame[0]) {
    case FRAME_HEADER: {
      if (frame.byteLength !== HEADER_BYTES) throw new InvalidMessageError(`a header frame is ${HEADER_BYTES} bytes, not ${frame.byteLength}`)
      const size = view.getBigUint64(1, true)
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidMessageError('announced size is not a safe integer')
      return { type: 'header', size: Number(size) }
    }
    case FRAME_DATA:
      if (frame.byteLength < 2) throw new InvalidMessageError('an empty data frame')
      return { type: 'data', bytes: frame.subarray(1) }
    case FRAME_ERROR: {
      if (frame.byteLength < ERROR_HEADER_BYTES) throw new InvalidMessageError('an error frame shorter than its header')
      const code = ERROR_CODES[frame[1]]
      if (code === undefined) throw new InvalidMessageError(`unknown error code ${frame[1]}`)
      const length = view.getUint16(2, true)
      if (length > MAX_REASON_BYTES || frame.byteLength !== ERROR_HEADER_BYTES + length) throw new InvalidMessageError('an error frame whose reason length does not match')
      let reason: string
      try {
        reason = new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(ERROR_HEADER_BYTES))
      } catch {
        throw new InvalidMessageError('an error reason that is not UTF-8')
      }
      return { type: 'error', code, reason }
    }
    default:
      throw new InvalidMessageError(`unknown frame type ${frame[0]}`)
  }
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
