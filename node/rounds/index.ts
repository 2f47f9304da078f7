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
 * const rounds = new Rounds({ network, ring, liveMembers: () => manifest.live(), logger }, { jobId })
 * rounds.start()
 * const r = await rounds.round({ round, vector, weightsHash, samples, step }, signal)
 * if (r.ok) apply(r.sum)
 */
export { Rounds } from './rounds.ts'
export type { LastRound, PartitionStatus, RoundEvent, RoundFigures, RoundOutcome, RoundRequest, RoundsComponents, RoundsEvents, RoundsInit, RoundsStatus } from './rounds.ts'
export { RoundTimes, TIMING_WINDOW } from './timing.ts'
export type { RoundTiming } from './timing.ts'
export { compareRank, hasQuorum, quorumSize, rankOf, sameMembers } from './group.ts'
export type { Group, GroupRank } from './group.ts'
export { membersOf, proposerOf, roundsMachine } from './machine.ts'
export type { AgreementResult, AttemptResult, ReadyInfo, RoundsContext, RoundsEvent, RoundsInput } from './machine.ts'
