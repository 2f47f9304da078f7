/**
 * InvalidMessageError: bytes that are not a valid frame. TimeoutError: a wait that took longer than its limit.
 * NotStartedError: a service used before `start()` or after `stop()`.
 */
export { InvalidMessageError, NotStartedError, TimeoutError, type InvalidMessageKind } from '../common/index.ts'

/** No peer asked could send the model (each one's answer is in `causes`). */
export class ModelUnavailableError extends Error {
  override name = 'ModelUnavailableError'
  readonly causes: Array<{ peer: string, error: string }>
  constructor (message: string, causes: Array<{ peer: string, error: string }>) {
    super(message)
    this.causes = causes
  }
}
