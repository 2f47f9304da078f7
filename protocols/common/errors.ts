/**
 * The errors every wire protocol shares, defined once. Each protocol's `errors.ts` re-exports them, so the
 * class a caller imports from any protocol's index is this one: `instanceof` holds across protocols, and
 * `err.name` (what callers test) is the same everywhere.
 */

/** What went wrong with a frame or message; `truncated` means the stream ended inside one (the sender went away mid-frame). */
export type InvalidMessageKind = 'too-large' | 'truncated' | 'malformed'

/**
 * Bytes that are not a valid message of the protocol: larger than its limit, cut short, or malformed (a bad
 * length prefix, type, size or field; not UTF-8 JSON; not matching the schema). `kind` says which; a protocol
 * that does not tell them apart leaves it `malformed`.
 */
export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
  readonly kind: InvalidMessageKind
  constructor (message: string, kind: InvalidMessageKind = 'malformed') {
    super(message)
    this.kind = kind
  }
}

/** A wait that took longer than its limit: a dial, a request, the next frame, an answer. */
export class TimeoutError extends Error {
  override name = 'TimeoutError'
}

/**
 * No peer asked could provide what was fetched; `causes` says what each one answered. Each transfer protocol
 * names its own (ModelUnavailableError, ShardUnavailableError), so callers test `err.name`.
 */
export class UnavailableError extends Error {
  override name = 'UnavailableError'
  readonly causes: Array<{ peer: string, error: string }>
  constructor (message: string, causes: Array<{ peer: string, error: string }>) {
    super(message)
    this.causes = causes
  }
}

/** A service or transport used before `start()` or after `stop()`. */
export class NotStartedError extends Error {
  override name = 'NotStartedError'
}
