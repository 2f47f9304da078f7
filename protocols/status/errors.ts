/** A frame that is too large, not UTF-8 JSON, or does not match the schema. */
export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}

/** The member answered with an error, or closed the stream without answering. */
export class StatusRequestError extends Error {
  override name = 'StatusRequestError'
}

/** The member did not answer within the request timeout. */
export class TimeoutError extends Error {
  override name = 'TimeoutError'
}
