export { InvalidMessageError } from '../common/index.ts'

export class StateSyncError extends Error {
  override name = 'StateSyncError'
}
