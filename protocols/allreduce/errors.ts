export { InvalidMessageError, NotStartedError, TimeoutError, type InvalidMessageKind } from '../common/index.ts'

/** A frame channel to or from a neighbour ended, was reset, or could not be opened. */
export class StreamClosedError extends Error {
  override name = 'StreamClosedError'
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
