/** The job asked for (or held in the data dir) is not the one the swarm or the data dir trains. */
export class JobConflictError extends Error {
  override name = 'JobConflictError'
}

/** No --join peer could be reached, or none sent the swarm's job. */
export class JoinFailedError extends Error {
  override name = 'JoinFailedError'
}
