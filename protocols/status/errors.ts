/**
 * InvalidMessageError: a frame that is too large, not UTF-8 JSON, or does not match the schema.
 * TimeoutError: the member did not answer within the request timeout.
 */
export { InvalidMessageError, TimeoutError } from '../common/index.ts'

/** The member answered with an error, or closed the stream without answering. */
export class StatusRequestError extends Error {
  override name = 'StatusRequestError'
}
