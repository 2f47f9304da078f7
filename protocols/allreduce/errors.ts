/** What went wrong with a frame; `truncated` means the stream ended inside one (the sender went away mid-frame). */
export type InvalidMessageKind = 'too-large' | 'truncated' | 'malformed'

/** Bytes that are not a valid frame: a bad length prefix, an unknown type, a wrong size, a bad field. */
export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
  readonly kind: InvalidMessageKind
  constructor (message: string, kind: InvalidMessageKind = 'malformed') {
    super(message)
    this.kind = kind
  }
}

/** A wait that took longer than its limit (a dial, the first frame of a plain TCP connection). */
export class TimeoutError extends Error {
  override name = 'TimeoutError'
}

/** A frame channel to or from a neighbour ended, was reset, or could not be opened. */
export class StreamClosedError extends Error {
  override name = 'StreamClosedError'
}

/** A transport used before `start()` or after `stop()`. */
export class NotStartedError extends Error {
  override name = 'NotStartedError'
}

/**
 * A round that ended without a sum. `Ring.run` returns this as `{ ok: false, … }` rather than throwing; callers
 * that prefer an exception throw this class (see `roundError`). `culprit` is the member to blame, where one is known.
 */
export class RoundAbortedError extends Error {
  override name = 'RoundAbortedError'
  readonly code: string
  readonly culprit: string | undefined
  constructor (message: string, code: string, culprit?: string) {
    super(message)
    this.code = code
    this.culprit = culprit
  }
}
