/** The two key-exchange messages, the data connection's preamble, and the key derivation. No I/O. */
import { hkdfSync } from 'node:crypto'
import {
  KEY_INFO, KEY_SHARE_BYTES, KEY_WIRE_VERSION, MESSAGE_REQUEST, MESSAGE_RESPONSE, PREAMBLE_BYTES, REQUEST_BYTES,
  RESPONSE_BYTES, SESSION_ID_BYTES, SESSION_KEY_BYTES
} from './constants.ts'
import { InvalidMessageError } from './errors.ts'

/** The dialer's request: its random share of the key. */
export interface KeyRequest {
  share: Uint8Array
}

/** The listener's answer: the session, its random share of the key, and the port its data plane listens on. */
export interface KeyResponse {
  port: number
  sessionId: Uint8Array
  share: Uint8Array
}

const utf8 = new TextEncoder()

/** A copy of part of a message (Buffer's slice is a view: the source may be reused). */
function copy (bytes: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end))
}

function checkBytes (bytes: Uint8Array, length: number, field: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== length) throw new RangeError(`${field} must be ${length} bytes`)
}

function checkHeader (bytes: Uint8Array, type: number, length: number, what: string): void {
  if (bytes.byteLength !== length) throw new InvalidMessageError(`${what} of ${bytes.byteLength} bytes, expected ${length}`)
  if (bytes[0] !== type) throw new InvalidMessageError(`${what} has type ${bytes[0]}, expected ${type}`)
  if (bytes[1] !== KEY_WIRE_VERSION) throw new InvalidMessageError(`${what} of version ${bytes[1]}, expected ${KEY_WIRE_VERSION}`)
}

export function encodeKeyRequest (request: KeyRequest): Uint8Array {
  checkBytes(request.share, KEY_SHARE_BYTES, 'share')
  const out = new Uint8Array(REQUEST_BYTES)
  out[0] = MESSAGE_REQUEST
  out[1] = KEY_WIRE_VERSION
  out.set(request.share, 2)
  return out
}

export function decodeKeyRequest (bytes: Uint8Array): KeyRequest {
  checkHeader(bytes, MESSAGE_REQUEST, REQUEST_BYTES, 'key request')
  return { share: copy(bytes, 2, 2 + KEY_SHARE_BYTES) }
}

export function encodeKeyResponse (response: KeyResponse): Uint8Array {
  checkBytes(response.sessionId, SESSION_ID_BYTES, 'sessionId')
  checkBytes(response.share, KEY_SHARE_BYTES, 'share')
  if (!Number.isInteger(response.port) || response.port < 1 || response.port > 0xffff) throw new RangeError(`port ${response.port} outside 1 … 65535`)
  const out = new Uint8Array(RESPONSE_BYTES)
  out[0] = MESSAGE_RESPONSE
  out[1] = KEY_WIRE_VERSION
  new DataView(out.buffer).setUint16(2, response.port, true)
  out.set(response.sessionId, 4)
  out.set(response.share, 4 + SESSION_ID_BYTES)
  return out
}

export function decodeKeyResponse (bytes: Uint8Array): KeyResponse {
  checkHeader(bytes, MESSAGE_RESPONSE, RESPONSE_BYTES, 'key response')
  const port = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(2, true)
  if (port === 0) throw new InvalidMessageError('key response with port 0')
  return {
    port,
    sessionId: copy(bytes, 4, 4 + SESSION_ID_BYTES),
    share: copy(bytes, 4 + SESSION_ID_BYTES, 4 + SESSION_ID_BYTES + KEY_SHARE_BYTES)
  }
}

/** The first bytes of a data connection, in the clear: the version and the session id. */
export function encodePreamble (sessionId: Uint8Array): Uint8Array {
  checkBytes(sessionId, SESSION_ID_BYTES, 'sessionId')
  const out = new Uint8Array(PREAMBLE_BYTES)
  out[0] = KEY_WIRE_VERSION
  out.set(sessionId, 1)
  return out
}

/** The session id of a preamble; InvalidMessageError for another version. */
export function decodePreamble (bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength !== PREAMBLE_BYTES) throw new InvalidMessageError(`preamble of ${bytes.byteLength} bytes, expected ${PREAMBLE_BYTES}`)
  if (bytes[0] !== KEY_WIRE_VERSION) throw new InvalidMessageError(`data connection of version ${bytes[0]}, expected ${KEY_WIRE_VERSION}`)
  return copy(bytes, 1, PREAMBLE_BYTES)
}

function lengthPrefixed (text: string): Uint8Array {
  const bytes = utf8.encode(text)
  const out = new Uint8Array(2 + bytes.byteLength)
  new DataView(out.buffer).setUint16(0, bytes.byteLength, true)
  out.set(bytes, 2)
  return out
}

/**
 * The key of one data connection: HKDF-SHA256 over both random shares, salted with the session id, bound to
 * this protocol and to both peer ids (as libp2p authenticated them). Both ends compute the same 32 bytes; no one
 * who did not see both shares (they travel only inside the encrypted libp2p stream) can.
 */
export function deriveSessionKey (init: { dialerShare: Uint8Array, listenerShare: Uint8Array, sessionId: Uint8Array, dialer: string, listener: string }): Uint8Array {
  checkBytes(init.dialerShare, KEY_SHARE_BYTES, 'dialerShare')
  checkBytes(init.listenerShare, KEY_SHARE_BYTES, 'listenerShare')
  checkBytes(init.sessionId, SESSION_ID_BYTES, 'sessionId')
  const ikm = new Uint8Array(2 * KEY_SHARE_BYTES)
  ikm.set(init.dialerShare)
  ikm.set(init.listenerShare, KEY_SHARE_BYTES)
  const info = Buffer.concat([utf8.encode(KEY_INFO), lengthPrefixed(init.dialer), lengthPrefixed(init.listener)])
  return new Uint8Array(hkdfSync('sha256', ikm, init.sessionId, info, SESSION_KEY_BYTES))
}
