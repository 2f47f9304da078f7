/**
 * InvalidMessageError: bytes that are not a valid frame. TimeoutError: a wait that took longer than its limit.
 * NotStartedError: a service used before `start()` or after `stop()`.
 */
import { UnavailableError } from '../common/index.ts'

export { InvalidMessageError, NotStartedError, TimeoutError, type InvalidMessageKind } from '../common/index.ts'

/** No peer asked could send the model (each one's answer is in `causes`). */
export class ModelUnavailableError extends UnavailableError {
  override name = 'ModelUnavailableError'
}
