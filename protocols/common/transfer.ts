/**
 * The frames the transfer protocols share (`/peer/shard/1.0.0`, `/peer/model/1.0.0`): one request per stream;
 * the holder answers with an error frame, or with a header frame (the sizes of what follows, laid out by each
 * protocol) followed by data frames of at most CHUNK_BYTES, then closes. The type tags, the data and error
 * frames and the answer's decoder are defined here once; each protocol adds its request and header frames.
 * Integers are little-endian; every frame sits behind framing.ts's length prefix.
 */
import { InvalidMessageError } from './errors.ts'

/** Frame type tags, the first byte of every frame. */
export const FRAME_REQUEST = 1
export const FRAME_HEADER = 2
export const FRAME_DATA = 3
export const FRAME_ERROR = 4

/** type u8, code u8, reason length u16, then the reason (UTF-8). */
export const ERROR_HEADER_BYTES = 4
/**
 * Bytes of payload per data frame. 256 KiB is yamux's initial receive window, so one frame never waits on a
 * window update half-way, and the per-frame costs (an await, a muxer frame, a write to the file) are small next to it.
 */
export const CHUNK_BYTES = 256 * 1024
/** The largest answer frame: a data frame. */
export const MAX_ANSWER_FRAME_BYTES = 1 + CHUNK_BYTES
/** An error's reason is a sentence for logs, not a document. */
export const MAX_REASON_BYTES = 256

/** Why a holder did not send what was asked for (the index is the wire value). */
export const TRANSFER_ERROR_CODES = [
  'not-found', // the holder does not have it
  'unavailable', // it has it but could not read it
  'bad-request' // the request frame was not valid
] as const
export type TransferErrorCode = typeof TRANSFER_ERROR_CODES[number]

/** One answer frame: the header (`H`, the protocol's sizes), a data frame, or an error. */
export type TransferResponse<H> =
  | ({ type: 'header' } & H)
  | { type: 'data', bytes: Uint8Array }
  | { type: 'error', code: TransferErrorCode, reason: string }

/** A protocol's header frame: its size in bytes (type tag included) and its fields' reader, which validates them. */
export interface HeaderLayout<H> {
  bytes: number
  /** The fields of a header frame of exactly `bytes` bytes; InvalidMessageError on a value out of bounds. */
  decode: (view: DataView) => H
}

/** A data frame around `bytes` (1 … CHUNK_BYTES of them). */
export function encodeData (bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength === 0 || bytes.byteLength > CHUNK_BYTES) throw new InvalidMessageError(`a data frame carries 1 … ${CHUNK_BYTES} bytes`)
  const out = new Uint8Array(1 + bytes.byteLength)
  out[0] = FRAME_DATA
  out.set(bytes, 1)
  return out
}

/** An error frame; a reason over MAX_REASON_BYTES is cut. */
export function encodeError (code: TransferErrorCode, reason: string): Uint8Array {
  let text = Buffer.from(reason, 'utf8')
  if (text.byteLength > MAX_REASON_BYTES) text = Buffer.from(reason.slice(0, MAX_REASON_BYTES / 4), 'utf8')
  const out = new Uint8Array(ERROR_HEADER_BYTES + text.byteLength)
  out[0] = FRAME_ERROR
  out[1] = TRANSFER_ERROR_CODES.indexOf(code)
  new DataView(out.buffer).setUint16(2, text.byteLength, true)
  out.set(text, ERROR_HEADER_BYTES)
  return out
}

/** One answer frame; InvalidMessageError on anything malformed or over the limits. */
export function decodeTransferResponse<H> (frame: Uint8Array, header: HeaderLayout<H>): TransferResponse<H> {
  if (frame.byteLength < 1 || frame.byteLength > MAX_ANSWER_FRAME_BYTES) throw new InvalidMessageError('response frame size out of bounds')
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  switch (frame[0]) {
    case FRAME_HEADER:
      if (frame.byteLength !== header.bytes) throw new InvalidMessageError(`a header frame is ${header.bytes} bytes, not ${frame.byteLength}`)
      return { type: 'header', ...header.decode(view) }
    case FRAME_DATA:
      if (frame.byteLength < 2) throw new InvalidMessageError('an empty data frame')
      return { type: 'data', bytes: frame.subarray(1) }
    case FRAME_ERROR: {
      if (frame.byteLength < ERROR_HEADER_BYTES) throw new InvalidMessageError('an error frame shorter than its header')
      const code = TRANSFER_ERROR_CODES[frame[1]]
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
