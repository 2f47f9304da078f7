/**
 * What the wire protocols share: the error classes every one of them throws (`InvalidMessageError` for any
 * input that is not a valid message, `TimeoutError`, `NotStartedError`). Protocols re-export them from their
 * own `errors.ts`, so importers keep importing from the protocol they use.
 *
 * @example
 * import { InvalidMessageError } from '../common/index.ts'
 * if (frame.byteLength > MAX_FRAME_BYTES) throw new InvalidMessageError(`frame of ${frame.byteLength} bytes`, 'too-large')
 */
export { InvalidMessageError, NotStartedError, TimeoutError } from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'
