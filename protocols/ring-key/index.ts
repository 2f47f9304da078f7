/**
 * `/peer/ring-key/1.0.0`: the keys of the ring's data plane. Before a ring member sends to its successor over a
 * direct TCP connection, it opens a libp2p stream on this protocol (so only a peer past the private network,
 * noise and the allow-list gets this far) and the two agree on a fresh key and session: the dialer sends a
 * random share, the listener answers with a session id, its own share and its data-plane port. The dialer then
 * connects to that port; every byte it sends there after a short clear preamble (version, session id) is in
 * AEAD records sealed with the session's key, the first of which proves the session. No I/O here: `node/ring`
 * runs the exchange and the sockets; this folder says what bytes are valid.
 *
 * Where this folder sits among the others: docs/architecture.md (the data plane: docs/ring.md).
 *
 * @example
 * const key = deriveSessionKey({ dialerShare, listenerShare, sessionId, dialer, listener })
 * const sealer = new RecordSealer(key)
 * socket.write(Buffer.concat(sealer.opening(sessionId)))      // preamble + open record
 * for (const b of sealer.seal([header, payload])) socket.write(b)
 * const opener = new RecordOpener({ keyFor: id => sessions.keyOf(id) })
 * for (const frame of opener.push(chunk)) { … }               // authenticated plaintexts, the open record first
 */
export * from './constants.ts'
export {
  decodeKeyRequest, decodeKeyResponse, decodePreamble, deriveSessionKey, encodeKeyRequest, encodeKeyResponse,
  encodePreamble
} from './codec.ts'
export type { KeyRequest, KeyResponse } from './codec.ts'
export { RecordOpener, RecordSealer, openRecordPlaintext } from './records.ts'
export {
  InvalidMessageError, KeyExhaustedError, RecordAuthError, TooManySessionsError, UnknownSessionError
} from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'
