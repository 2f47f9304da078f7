/**
 * The frames of `/peer/model/1.0.0` and their encoders and decoders. Integers
 * are little-endian. Every frame sits behind an unsigned varint length prefix
 * (protocols/common/framing.ts) and is never larger than MAX_FRAME_BYTES.
 */
import {
  CHUNK_BYTES, ERROR_HEADER_BYTES, FRAME_DATA, FRAME_ERROR, FRAME_HEADER, FRAME_REQUEST, HEADER_BYTES, MAX_FRAME_BYTES,
  MAX_MODEL_JSON_BYTES, MAX_REASON_BYTES, MAX_WEIGHTS_BYTES, MODEL_KEY_BYTES, REQUEST_BYTES
} from './constants.ts'
import { InvalidMessageError } from './errors.ts'

/** Why a holder did not send the model (the index is the wire value). */
export const ERROR_CODES = ['not-found', 'unavailable', 'bad-request'] as const
export type ErrorCode = typeof ERROR_CODES[number]

export type ModelResponse =
  | { type: 'header', jsonBytes: number, weightsBytes: number }
  | { type: 'data', bytes: Uint8Array }
  | { type: 'error', code: ErrorCode, reason: string }

const MODEL_ID = /^mdl-([0-9a-f]{16})$/

export function encodeRequest (modelId: string): Uint8Array {
  const m = MODEL_ID.exec(modelId)
  if (m === null) throw new InvalidMessageError('a model is asked for by its id, mdl- and 16 lower-case hex digits')
  const out = new Uint8Array(REQUEST_BYTES)
  out[0] = FRAME_REQUEST
  out.set(Buffer.from(m[1], 'hex'), 1)
  return out
}

export function decodeRequest (frame: Uint8Array): string {
  if (frame.byteLength !== REQUEST_BYTES || frame[0] !== FRAME_REQUEST) throw new InvalidMessageError(`expected a request frame of ${REQUEST_BYTES} bytes`)
  return `mdl-${Buffer.from(frame.subarray(1, 1 + MODEL_KEY_BYTES)).toString('hex')}`
}

export function encodeHeader (jsonBytes: number, weightsBytes: number): Uint8Array {
  if (!Number.isSafeInteger(jsonBytes) || jsonBytes < 1 || jsonBytes > MAX_MODEL_JSON_BYTES) throw new InvalidMessageError(`model.json size must be 1 … ${MAX_MODEL_JSON_BYTES}`)
  if (!Number.isSafeInteger(weightsBytes) || weightsBytes < 0 || weightsBytes > MAX_WEIGHTS_BYTES) throw new InvalidMessageError(`weights size must be 0 … ${MAX_WEIGHTS_BYTES}`)
  const out = new Uint8Array(HEADER_BYTES)
  out[0] = FRAME_HEADER
  const view = new DataView(out.buffer)
  view.setBigUint64(1, BigInt(jsonBytes), true)
  view.setBigUint64(9, BigInt(weightsBytes), true)
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

/** One response frame; InvalidMessageError on anything malformed or over the limits. */
export function decodeResponse (frame: Uint8Array): ModelResponse {
  if (frame.byteLength < 1 || frame.byteLength > MAX_FRAME_BYTES) throw new InvalidMessageError('response frame size out of bounds')
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  switch (frame[0]) {
    case FRAME_HEADER: {
      if (frame.byteLength !== HEADER_BYTES) throw new InvalidMessageError(`a header frame is ${HEADER_BYTES} bytes, not ${frame.byteLength}`)
      const json = view.getBigUint64(1, true)
      const weights = view.getBigUint64(9, true)
      if (json < 1n || json > BigInt(MAX_MODEL_JSON_BYTES)) throw new InvalidMessageError(`announced model.json size ${json} is out of bounds (1 … ${MAX_MODEL_JSON_BYTES})`, 'too-large')
      if (weights > BigInt(MAX_WEIGHTS_BYTES)) throw new InvalidMessageError(`announced weights size ${weights} is over the limit of ${MAX_WEIGHTS_BYTES}`, 'too-large')
      return { type: 'header', jsonBytes: Number(json), weightsBytes: Number(weights) }
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
