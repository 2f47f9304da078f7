/**
 * Rounds: which members sum their updates in round r, and in which order.
 * A group (an epoch and an ordered member list) is agreed over gossip (every
 * member announces `ready`; the lowest ready peer proposes the list) and
 * reused round after round while it is stable; each round is summed with the
 * ring all-reduce (docs/rounds.md).
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const rounds = new Rounds({ network, ring, liveMembers: () => manifest.live(), logger })
 * rounds.start(jobId)
 * const r = await rounds.reduce({ round, vector, weightsHash, samples, step })
 * if (r.ok) apply(r.sum)
 */
export { Rounds } from './rounds.ts'
export type { PartitionStatus, ReduceRequest, ReduceResult, RoundEvent, RoundsComponents, RoundsEvents, RoundsInit, RoundsStatus } from './rounds.ts'
export { compareRank, hasQuorum, quorumSize, rankOf, sameMembers } from './group.ts'
export type { Group, GroupRank } from './group.ts'
export { membersOf, proposerOf, roundsMachine } from './machine.ts'
export type { ReadyInfo, ReduceOutput, RoundsContext, RoundsEvent, RoundsInput, RoundsOutput } from './machine.ts'
