/** What went wrong with a frame; `truncated` means the stream ended inside one. */
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

/** A wait that took longer than its limit (a dial, the request, the next frame). */
export class TimeoutError extends Error {
  override name = 'TimeoutError'
}

/** The asked peer does not hold what was asked for: ask another. */
export class ShardNotFoundError extends Error {
  override name = 'ShardNotFoundError'
}

/** The bytes received do not hash to what was asked for: they were discarded; ask another peer. */
export class ShardHashMismatchError extends Error {
  override name = 'ShardHashMismatchError'
  readonly expected: string
  readonly actual: string
  constructor (message: string, expected: string, actual: string) {
    super(message)
    this.expected = expected
    this.actual = actual
  }
}

/** The transfer failed part-way: the stream ended early or was reset, or the holder reported an error. */
export class ShardFetchError extends Error {
  override name = 'ShardFetchError'
}

/** No peer asked could provide it. `causes` says what each one answered. */
export class ShardUnavailableError extends Error {
  override name = 'ShardUnavailableError'
  readonly causes: Array<{ peer: string, error: string }>
  constructor (message: string, causes: Array<{ peer: string, error: string }>) {
    super(message)
    this.causes = causes
  }
}

/** A service used before `start()` or after `stop()`. */
export class NotStartedError extends Error {
  override name = 'NotStartedError'
}
