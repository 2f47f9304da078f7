export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError'
}

export class CorruptDataDirError extends Error {
  override name = 'CorruptDataDirError'
}

export { JobConflictError, JoinFailedError } from '../network/errors.ts'
