/**
 * The frames of `/peer/allreduce/1.0.0` and their encoders and decoders. Every integer is little-endian, and so
 * is the float32 payload (the byte order of every machine we run on; `assertLittleEndian` guards the rest).
 *
 * Stream layout: frames back to back, each behind an unsigned varint length prefix. Per round, a sender writes
 * one hello, then its data frames in order, then its done tokens (count 1 … N−1); or, if it gives up, one abort
 * instead of the rest.
 */
import { createHash } from 'node:crypto'
import { endianness } from 'node:os'
import {
  ABORT_HEADER_BYTES, DATA_HEADER_BYTES, DONE_BYTES, FRAME_ABORT, FRAME_DATA, FRAME_DONE, FRAME_HELLO, FRAME_IDENT, HELLO_BYTES,
  IDENT_HEADER_BYTES, MAX_BLOCK_BYTES, MAX_FRAME_BYTES, MAX_MEMBERS, MAX_PEER_ID_BYTES, MAX_REASON_BYTES, MAX_U32,
  MEMBERS_HASH_BYTES, WIRE_VERSION, COMPRESSIONS
} from './constants.ts'
import type { Compression } from './constants.ts'
import { FrameDecoder as CommonFrameDecoder, encodeLengthPrefix as encodeCommonLengthPrefix } from '../common/index.ts'
import { InvalidMessageError } from './errors.ts'

/** Why a round aborted, as carried in an abort frame (the index in this list is the wire value). */
export const ABORT_CODES = [
  'cancelled', // the member's caller cancelled the round
  'stopped', // the member's ring service stopped
  'timeout', // connecting or a step took longer than its limit
  'peer-lost', // a neighbour's stream ended, was reset or could not be opened
  'invalid-frame', // a neighbour sent a malformed frame, a wrong field, NaN or Inf
  'mismatch', // neighbours disagree on the member list, the vector length or their positions
  'peer-aborted', // the upstream neighbour aborted (and said why) or moved on to a later round
  'invalid-spec', // the round's spec was unusable (checked before anything is sent)
  'internal' // a bug
] as const
export type AbortCode = typeof ABORT_CODES[number]

/** Opens a sender's part of a round: who it thinks is in the round, in which order, and how long the vector is. */
export interface HelloFrame {
  type: 'hello'
  version: number
  round: number
  attempt: number
  /** Number of members. */
  members: number
  /** The sender's position in the member list. */
  index: number
  /** Length of the vector, in float32 elements. */
  elements: number
  /** The round gathers whole vectors rather than reducing chunks (node/ring/layout.ts); neighbours must agree. */
  gathers: boolean
  /** How the round carries its vector (COMPRESSIONS); neighbours must agree. */
  compression: Compression
  /** A `bf16` round: the elements at the vector's end that travel as float32 (counts that must stay exact); 0 otherwise. */
  exact: number
  /** SHA-256 of the ordered member list (`membersHash`). */
  membersHash: Uint8Array
}

/** Where a block of floats belongs: round, attempt, step (0 … 2N−3), chunk, element offset in the chunk, element count. */
export interface DataHeader {
  round: number
  attempt: number
  step: number
  chunk: number
  offset: number
  length: number
  /** The payload is bfloat16s (2 bytes an element) rather than float32s (absent: false). */
  bf16?: boolean
}

export interface DataFrame extends DataHeader {
  type: 'data'
  bf16: boolean
  /**
   * `4 × length` bytes of little-endian float32 (`2 × length` of bfloat16 with `bf16`), a view into the frame (not
   * copied, not necessarily aligned).
   */
  payload: Uint8Array
}

/** Sent instead of the rest of a round's data when the sender aborts, so that its successor aborts at once. */
export interface AbortFrame {
  type: 'abort'
  round: number
  attempt: number
  code: AbortCode
  /** The member the sender blames, if any; forwarded unchanged around the ring. */
  culprit?: string
  reason: string
}

/** The first frame on a transport that does not authenticate its remote (plain TCP). */
export interface IdentFrame {
  type: 'ident'
  peer: string
}

/**
 * A commit token: the sender and the `count − 1` members before it in the ring hold the whole sum. A member
 * sends count 1 once it has the sum, and count k+1 after receiving count k (up to N−1); receiving count N−1
 * tells it that every other member has the sum too.
 */
export interface DoneFrame {
  type: 'done'
  round: number
  attempt: number
  count: number
}

export type Frame = HelloFrame | DataFrame | AbortFrame | IdentFrame | DoneFrame

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder('utf-8', { fatal: true })

/** Throws unless this machine stores floats little-endian (the payload is sent as the bytes of a Float32Array). */
export function assertLittleEndian (): void {
  if (endianness() !== 'LE') throw new Error('the allreduce wire format is little-endian; big-endian hosts are not supported')
}

/**
 * SHA-256 of the ordered member list (each id as u16 length and UTF-8), then the group tag if there is one (the
 * group epoch and the weights the members start from, as node/rounds sets it): equal lists and tags, equal
 * hashes, on every machine.
 */
export function membersHash (members: readonly string[], tag = ''): Uint8Array {
  const hash = createHash('sha256')
  const count = new Uint8Array(2)
  new DataView(count.buffer).setUint16(0, members.length, true)
  hash.update(count)
  for (const id of members) {
    const bytes = utf8.encode(id)
    const len = new Uint8Array(2)
    new DataView(len.buffer).setUint16(0, bytes.byteLength, true)
    hash.update(len)
    hash.update(bytes)
  }
  if (tag !== '') hash.update(utf8.encode(tag))
  return new Uint8Array(hash.digest())
}

function checkU32 (value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) throw new RangeError(`${field} must be a u32, got ${value}`)
}

function checkU16 (value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new RangeError(`${field} must be a u16, got ${value}`)
}

/** Cuts a string to at most `max` bytes of UTF-8 without splitting a character. */
function utf8Bounded (text: string, max: number): Uint8Array {
  const bytes = utf8.encode(text)
  if (bytes.byteLength <= max) return bytes
  let end = max
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
}

/** A hello's bytes; without `compression` a round of float32s (`none`, exact 0). */
export function encodeHello (fields: Omit<HelloFrame, 'type' | 'version' | 'compression' | 'exact'> & Partial<Pick<HelloFrame, 'compression' | 'exact'>>): Uint8Array {
  const hello = { compression: 'none' as Compression, exact: 0, ...fields }
  checkU32(hello.round, 'round')
  checkU32(hello.attempt, 'attempt')
  checkU32(hello.elements, 'elements')
  checkU16(hello.members, 'members')
  checkU16(hello.index, 'index')
  checkU32(hello.exact, 'exact')
  const compression = COMPRESSIONS.indexOf(hello.compression)
  if (compression < 0) throw new RangeError(`unknown compression ${hello.compression}`)
  if (hello.exact > hello.elements) throw new RangeError(`exact ${hello.exact} exceeds the ${hello.elements} elements`)
  if (hello.compression === 'none' && hello.exact !== 0) throw new RangeError('exact is for a bf16 round')
  if (hello.membersHash.byteLength !== MEMBERS_HASH_BYTES) throw new RangeError('membersHash must be 32 bytes')
  const out = new Uint8Array(HELLO_BYTES)
  const view = new DataView(out.buffer)
  view.setUint8(0, FRAME_HELLO)
  view.setUint8(1, WIRE_VERSION)
  view.setUint16(2, hello.members, true)
  view.setUint32(4, hello.round, true)
  view.setUint32(8, hello.attempt, true)
  view.setUint32(12, hello.elements, true)
  view.setUint16(16, hello.index, true)
  view.setUint8(18, hello.gathers ? 1 : 0)
  view.setUint8(19, compression)
  out.set(hello.membersHash, 20)
  view.setUint32(20 + MEMBERS_HASH_BYTES, hello.exact, true)
  return out
}

/** The 24-byte header of a data frame; the payload travels as a separate part (no copy of the vector). */
export function encodeDataHeader (header: DataHeader): Uint8Array {
  checkU32(header.round, 'round')
  checkU32(header.attempt, 'attempt')
  checkU16(header.step, 'step')
  checkU32(header.chunk, 'chunk')
  checkU32(header.offset, 'offset')
  checkU32(header.length, 'length')
  const out = new Uint8Array(DATA_HEADER_BYTES)
  const view = new DataView(out.buffer)
  view.setUint8(0, FRAME_DATA)
  view.setUint8(1, header.bf16 === true ? 1 : 0)
  view.setUint16(2, header.step, true)
  view.setUint32(4, header.round, true)
  view.setUint32(8, header.attempt, true)
  view.setUint32(12, header.chunk, true)
  view.setUint32(16, header.offset, true)
  view.setUint32(20, header.length, true)
  return out
}

/** A whole data frame in one buffer (tests and tools; the ring sends header and payload as two parts). */
export function encodeData (header: DataHeader, payload: Float32Array | Uint16Array): Uint8Array {
  if (payload.length !== header.length) throw new RangeError('payload length differs from header.length')
  if ((payload instanceof Uint16Array) !== (header.bf16 === true)) throw new RangeError('a bfloat16 payload (Uint16Array) goes with header.bf16, float32 without')
  const out = new Uint8Array(DATA_HEADER_BYTES + payload.byteLength)
  out.set(encodeDataHeader(header))
  out.set(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength), DATA_HEADER_BYTES)
  return out
}

export function encodeAbort (abort: Omit<AbortFrame, 'type'>): Uint8Array {
  checkU32(abort.round, 'round')
  checkU32(abort.attempt, 'attempt')
  const code = ABORT_CODES.indexOf(abort.code)
  if (code < 0) throw new RangeError(`unknown abort code ${abort.code}`)
  const culprit = utf8Bounded(abort.culprit ?? '', MAX_PEER_ID_BYTES)
  const reason = utf8Bounded(abort.reason, MAX_REASON_BYTES)
  const out = new Uint8Array(ABORT_HEADER_BYTES + culprit.byteLength + reason.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, FRAME_ABORT)
  view.setUint8(1, code)
  view.setUint16(2, culprit.byteLength, true)
  view.setUint32(4, abort.round, true)
  view.setUint32(8, abort.attempt, true)
  view.setUint16(12, reason.byteLength, true)
  out.set(culprit, ABORT_HEADER_BYTES)
  out.set(reason, ABORT_HEADER_BYTES + culprit.byteLength)
  return out
}

export function encodeDone (done: Omit<DoneFrame, 'type'>): Uint8Array {
  checkU32(done.round, 'round')
  checkU32(done.attempt, 'attempt')
  checkU16(done.count, 'count')
  const out = new Uint8Array(DONE_BYTES)
  const view = new DataView(out.buffer)
  view.setUint8(0, FRAME_DONE)
  view.setUint16(2, done.count, true)
  view.setUint32(4, done.round, true)
  view.setUint32(8, done.attempt, true)
  return out
}

export function encodeIdent (ident: Omit<IdentFrame, 'type'>): Uint8Array {
  const id = utf8.encode(ident.peer)
  if (id.byteLength === 0 || id.byteLength > MAX_PEER_ID_BYTES) throw new RangeError(`peer id must be 1 to ${MAX_PEER_ID_BYTES} bytes`)
  const out = new Uint8Array(IDENT_HEADER_BYTES + id.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, FRAME_IDENT)
  view.setUint16(2, id.byteLength, true)
  out.set(id, IDENT_HEADER_BYTES)
  return out
}

function text (bytes: Uint8Array, field: string): string {
  try {
    return utf8Strict.decode(bytes)
  } catch {
    throw new InvalidMessageError(`${field} is not valid UTF-8`)
  }
}

/**
 * Decodes one frame (without its length prefix). Throws InvalidMessageError on anything that is not exactly a
 * valid frame; allocates nothing in proportion to any field (the data payload is a view).
 */
export function decodeFrame (frame: Uint8Array): Frame {
  if (frame.byteLength === 0) throw new InvalidMessageError('empty frame')
  if (frame.byteLength > MAX_FRAME_BYTES) throw new InvalidMessageError(`frame of ${frame.byteLength} bytes exceeds ${MAX_FRAME_BYTES}`, 'too-large')
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  const type = frame[0]
  switch (type) {
    case FRAME_DATA: {
      if (frame.byteLength < DATA_HEADER_BYTES) throw new InvalidMessageError(`data frame of ${frame.byteLength} bytes is shorter than its header`)
      const format = view.getUint8(1)
      if (format > 1) throw new InvalidMessageError(`data frame of format ${format} (0: float32, 1: bfloat16)`)
      const header = decodeDataHeaderUnchecked(view)
      if (header.length === 0) throw new InvalidMessageError('data frame without elements')
      if (header.length > MAX_BLOCK_BYTES / 4) throw new InvalidMessageError(`data frame of ${header.length} elements exceeds the largest block`, 'too-large')
      const bytesEach = format === 1 ? 2 : 4
      if (frame.byteLength !== DATA_HEADER_BYTES + header.length * bytesEach) {
        throw new InvalidMessageError(`data frame says ${header.length} ${format === 1 ? 'bfloat16' : 'float32'} elements but carries ${frame.byteLength - DATA_HEADER_BYTES} bytes`)
      }
      return { type: 'data', ...header, bf16: format === 1, payload: frame.subarray(DATA_HEADER_BYTES) }
    }
    case FRAME_HELLO: {
      if (frame.byteLength !== HELLO_BYTES) throw new InvalidMessageError(`hello of ${frame.byteLength} bytes, expected ${HELLO_BYTES}`)
      const version = view.getUint8(1)
      if (version !== WIRE_VERSION) throw new InvalidMessageError(`hello of wire version ${version}, expected ${WIRE_VERSION}`)
      const members = view.getUint16(2, true)
      if (members === 0 || members > MAX_MEMBERS) throw new InvalidMessageError(`hello with ${members} members (1 to ${MAX_MEMBERS})`)
      const index = view.getUint16(16, true)
      if (index >= members) throw new InvalidMessageError(`hello from position ${index} of ${members} members`)
      const gathers = view.getUint8(18)
      if (gathers > 1) throw new InvalidMessageError(`hello with mode byte ${gathers} (0 or 1)`)
      const compression = COMPRESSIONS[view.getUint8(19)]
      if (compression === undefined) throw new InvalidMessageError(`hello with compression byte ${view.getUint8(19)} (0 to ${COMPRESSIONS.length - 1})`)
      const elements = view.getUint32(12, true)
      const exact = view.getUint32(20 + MEMBERS_HASH_BYTES, true)
      if (exact > elements) throw new InvalidMessageError(`hello with ${exact} exact elements of ${elements}`)
      if (compression === 'none' && exact !== 0) throw new InvalidMessageError(`hello without compression says ${exact} exact elements (0)`)
      return {
        type: 'hello',
        version,
        members,
        round: view.getUint32(4, true),
        attempt: view.getUint32(8, true),
        elements,
        index,
        gathers: gathers === 1,
        compression,
        exact,
        membersHash: frame.slice(20, 20 + MEMBERS_HASH_BYTES)
      }
    }
    case FRAME_ABORT: {
      if (frame.byteLength < ABORT_HEADER_BYTES) throw new InvalidMessageError(`abort of ${frame.byteLength} bytes is shorter than its header`)
      const codeIndex = view.getUint8(1)
      const code = ABORT_CODES[codeIndex]
      if (code === undefined) throw new InvalidMessageError(`abort with unknown code ${codeIndex}`)
      const culpritLength = view.getUint16(2, true)
      const reasonLength = view.getUint16(12, true)
      if (culpritLength > MAX_PEER_ID_BYTES) throw new InvalidMessageError(`abort culprit of ${culpritLength} bytes`)
      if (reasonLength > MAX_REASON_BYTES) throw new InvalidMessageError(`abort reason of ${reasonLength} bytes`)
      if (frame.byteLength !== ABORT_HEADER_BYTES + culpritLength + reasonLength) throw new InvalidMessageError('abort frame length differs from its fields')
      const culprit = text(frame.subarray(ABORT_HEADER_BYTES, ABORT_HEADER_BYTES + culpritLength), 'abort culprit')
      const reason = text(frame.subarray(ABORT_HEADER_BYTES + culpritLength), 'abort reason')
      return {
        type: 'abort',
        round: view.getUint32(4, true),
        attempt: view.getUint32(8, true),
        code,
        ...(culprit.length > 0 ? { culprit } : {}),
        reason
      }
    }
    case FRAME_DONE: {
      if (frame.byteLength !== DONE_BYTES) throw new InvalidMessageError(`done frame of ${frame.byteLength} bytes, expected ${DONE_BYTES}`)
      const count = view.getUint16(2, true)
      if (count === 0 || count >= MAX_MEMBERS) throw new InvalidMessageError(`done frame with count ${count}`)
      return { type: 'done', round: view.getUint32(4, true), attempt: view.getUint32(8, true), count }
    }
    case FRAME_IDENT: {
      if (frame.byteLength < IDENT_HEADER_BYTES) throw new InvalidMessageError(`ident of ${frame.byteLength} bytes is shorter than its header`)
      const length = view.getUint16(2, true)
      if (length === 0 || length > MAX_PEER_ID_BYTES) throw new InvalidMessageError(`ident of ${length} bytes (1 to ${MAX_PEER_ID_BYTES})`)
      if (frame.byteLength !== IDENT_HEADER_BYTES + length) throw new InvalidMessageError('ident frame length differs from its field')
      return { type: 'ident', peer: text(frame.subarray(IDENT_HEADER_BYTES), 'ident peer id') }
    }
    default:
      throw new InvalidMessageError(`unknown frame type ${type}`)
  }
}

function decodeDataHeaderUnchecked (view: DataView): DataHeader {
  return {
    step: view.getUint16(2, true),
    round: view.getUint32(4, true),
    attempt: view.getUint32(8, true),
    chunk: view.getUint32(12, true),
    offset: view.getUint32(16, true),
    length: view.getUint32(20, true)
  }
}

/**
 * Encodes the varint length prefix of a frame of `length` bytes (the shared framing's, protocols/common). It
 * does not enforce MAX_FRAME_BYTES: the limit is the receiver's to check (and a test's to break).
 */
export function encodeLengthPrefix (length: number): Uint8Array {
  if (!Number.isInteger(length) || length <= 0 || length > MAX_U32) throw new RangeError(`frame length ${length} outside 1 … ${MAX_U32}`)
  return encodeCommonLengthPrefix(length)
}

/** The shared frame decoder (protocols/common), at most MAX_FRAME_BYTES a frame unless told otherwise. */
export class FrameDecoder extends CommonFrameDecoder {
  constructor (maxFrameBytes: number = MAX_FRAME_BYTES) {
    super(maxFrameBytes)
  }
}
