export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError'
}

export class CorruptDataDirError extends Error {
  override name = 'CorruptDataDirError'
}

export class JobConflictError extends Error {
  override name = 'JobConflictError'
}

export class JoinFailedError extends Error {
  override name = 'JoinFailedError'
}
