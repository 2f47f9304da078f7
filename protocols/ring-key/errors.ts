/** Bytes that are not a valid key message, preamble or record header: the error every protocol shares. */
export { InvalidMessageError, type InvalidMessageKind } from '../common/index.ts'

/** A data connection named a session this listener never issued, has expired, or has already given to a connection. */
export class UnknownSessionError extends Error {
  override name = 'UnknownSessionError'
}

/** A record whose tag does not verify: tampered with, replayed, reordered, or sealed with another key. */
export class RecordAuthError extends Error {
  override name = 'RecordAuthError'
}

/** A peer asked for more sessions than it may hold unclaimed (MAX_PENDING_SESSIONS_PER_PEER). */
export class TooManySessionsError extends Error {
  override name = 'TooManySessionsError'
}

/** A key has sealed MAX_RECORDS_PER_KEY records: the connection must be replaced (with a new key). */
export class KeyExhaustedError extends Error {
  override name = 'KeyExhaustedError'
}
