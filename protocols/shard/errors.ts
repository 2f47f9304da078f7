/**
 * InvalidMessageError: bytes that are not a valid frame (a bad length prefix, an unknown type, a wrong size, a
 * bad field). TimeoutError: a wait that took longer than its limit (a dial, the request, the next frame).
 * NotStartedError: a service used before `start()` or after `stop()`.
 */
import { UnavailableError } from '../common/index.ts'

export { InvalidMessageError, NotStartedError, TimeoutError, type InvalidMessageKind } from '../common/index.ts'

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
export class ShardUnavailableError extends UnavailableError {
  override name = 'ShardUnavailableError'
}
