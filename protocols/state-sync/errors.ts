export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}

export class StateSyncError extends Error {
  override name = 'StateSyncError'
}
