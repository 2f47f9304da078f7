/** A join token that is not one `peer start` printed: wrong prefix, damaged, or with bad fields. */
export class InvalidJoinTokenError extends Error {
  override name = 'InvalidJoinTokenError'
}

/** A swarm key file that is not a libp2p pre-shared key (v1 format, 32 bytes). */
export class InvalidSwarmKeyError extends Error {
  override name = 'InvalidSwarmKeyError'
}

/**
 * The data dir and the command line disagree about the swarm: a token with another key than the data dir's,
 * or `--open` on the data dir of a private swarm.
 */
export class SwarmKeyConflictError extends Error {
  override name = 'SwarmKeyConflictError'
}

/** An allow-list file with a line that is not a peer id. */
export class InvalidAllowListError extends Error {
  override name = 'InvalidAllowListError'
}

/** A fresh data dir asked to join by address, without the swarm's join token and without `--open`. */
export class SwarmKeyRequiredError extends Error {
  override name = 'SwarmKeyRequiredError'
}

/**
 * `peer join-token` has no token to print: the data dir's swarm is open (no swarm key), no peer ever ran there,
 * or no addresses are known (the peer has not listened yet).
 */
export class NoJoinTokenError extends Error {
  override name = 'NoJoinTokenError'
}
