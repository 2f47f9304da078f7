/**
 * The swarm's secrets and who may connect: the swarm key (libp2p private network pre-shared key) kept in the
 * data dir, the join token that carries it with the bootstrap addresses, and allow-lists of peer ids. No I/O
 * beyond the data dir and the files named; nothing here logs, and no error message repeats a key.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const { key } = await resolveSwarmKey(dataDir, { given: token?.key, open: false, joining: false })
 * const token = encodeJoinToken({ addresses: network.addresses(), key }) // 'peer1.eyJhIjpbIi9pcDQv…'
 * decodeJoinToken(token) // { addresses, key }; InvalidJoinTokenError on anything else
 */
export * from './constants.ts'
export {
  InvalidAllowListError, InvalidJoinTokenError, InvalidSwarmKeyError, NoJoinTokenError, SwarmKeyConflictError,
  SwarmKeyRequiredError
} from './errors.ts'
export {
  decodeSwarmKeyFile, encodeSwarmKeyFile, generateSwarmKey, readSwarmKey, resolveSwarmKey, swarmKeyFingerprint,
  swarmKeysEqual, swarmMode, writeSwarmKey
} from './swarm-key.ts'
export type { ResolvedSwarmKey, SwarmKeyChoice } from './swarm-key.ts'
export { decodeJoinToken, encodeJoinToken, isJoinToken, tokenAddresses } from './join-token.ts'
export type { JoinToken } from './join-token.ts'
export { parseAllowList, readAllowList } from './allow-list.ts'
export { joinTokenOf, lastAddresses, rememberAddresses } from './join-token-of.ts'
export type { LastAddresses } from './join-token-of.ts'
