export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}
