/**
 * The frames of `/peer/model/1.0.0` and their encoders and decoders. Integers
 * are little-endian. Every frame sits behind an unsigned varint length prefix
 * (protocols/common/framing.ts) and is never larger than MAX_FRAME_BYTES. The data and error frames, and
 * the answer's decoder, are those of every transfer protocol (protocols/common/transfer.ts).
 */
import {
  FRAME_HEADER, FRAME_REQUEST, HEADER_BYTES, MAX_MODEL_JSON_BYTES, MAX_WEIGHTS_BYTES, MODEL_KEY_BYTES, REQUEST_BYTES
} from './constants.ts'
import { TRANSFER_ERROR_CODES, decodeTransferResponse } from '../common/index.ts'
import type { HeaderLayout, TransferErrorCode, TransferResponse } from '../common/index.ts'
import { InvalidMessageError } from './errors.ts'

/** The data and error frames are those every transfer protocol shares. */
export { encodeData, encodeError } from '../common/index.ts'

/** Why a holder did not send the model (the index is the wire value). */
export const ERROR_CODES = TRANSFER_ERROR_CODES
export type ErrorCode = TransferErrorCode

/** The sizes a header frame announces: model.json's, then the weights'. */
export interface ModelHeader { jsonBytes: number, weightsBytes: number }
export type ModelResponse = TransferResponse<ModelHeader>

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

/** The header frame's sizes, each within its bound. */
const HEADER: HeaderLayout<ModelHeader> = {
  bytes: HEADER_BYTES,
  decode: view => {
    const json = view.getBigUint64(1, true)
    const weights = view.getBigUint64(9, true)
    if (json < 1n || json > BigInt(MAX_MODEL_JSON_BYTES)) throw new InvalidMessageError(`announced model.json size ${json} is out of bounds (1 … ${MAX_MODEL_JSON_BYTES})`, 'too-large')
    if (weights > BigInt(MAX_WEIGHTS_BYTES)) throw new InvalidMessageError(`announced weights size ${weights} is over the limit of ${MAX_WEIGHTS_BYTES}`, 'too-large')
    return { jsonBytes: Number(json), weightsBytes: Number(weights) }
  }
}

/** One response frame; InvalidMessageError on anything malformed or over the limits. */
export function decodeResponse (frame: Uint8Array): ModelResponse {
  return decodeTransferResponse(frame, HEADER)
}
