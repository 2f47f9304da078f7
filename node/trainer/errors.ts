export class CheckpointMismatchError extends Error {
  override name = 'CheckpointMismatchError'
}

export class CorruptCheckpointError extends Error {
  override name = 'CorruptCheckpointError'
}
