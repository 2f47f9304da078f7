export { InvalidModelError } from '../trainer/index.ts'

/** The data dir does not hold this model (fetch it from the swarm). */
export class ModelNotFoundError extends Error {
  override name = 'ModelNotFoundError'
}

/** A stored model whose files do not hash to its id, or do not parse: it is never loaded. */
export class CorruptModelError extends Error {
  override name = 'CorruptModelError'
}
