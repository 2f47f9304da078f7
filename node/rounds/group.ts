/**
 * The group a member trains with: an epoch number and an ordered member list, agreed once (a proposal) and
 * reused for every round until a round fails or the membership changes. The same group defines the quorum a
 * member needs before it may advance its model again (docs/rounds.md, "Partitions").
 */

export interface Group {
  /** Grows by one with every agreement; 0 before the first. */
  epoch: number
  /** Sorted peer ids: the ring order. */
  members: string[]
}

/** How a member's state ranks against another's when two sides of a split meet (manifest heartbeats carry it). */
export interface GroupRank {
  epoch: number
  /** Members of the group the state was trained in. */
  size: number
  /** The lowest peer id of that group: the deterministic tie-break between two groups of one epoch. */
  lead: string
  /** Rounds completed: orders states of the same group only. */
  round: number
}

/**
 * Whether `members` may form a group that follows `base` (the last agreed group, without the members that
 * left cleanly): a strict majority of `base`; exactly half when that half holds the lowest peer id of `base`
 * (a 4-member swarm split 2|2 goes on on one side only); and in a group of two, either member alone, so that
 * one crash does not stop the survivor (a real 2-peer split then trains on both sides, and the side with
 * the lower peer id wins when they meet: `compareRank`). No base (a new swarm, a fresh joiner): any.
 */
export function hasQuorum (base: readonly string[] | null, members: readonly string[]): boolean {
  if (base === null || base.length === 0) return true
  const inside = new Set(members)
  const count = base.filter(p => inside.has(p)).length
  if (2 * count > base.length) return true
  if (base.length === 2) return count >= 1
  if (2 * count === base.length) return inside.has([...base].sort()[0])
  return false
}

/** Members of `base` a member needs (the count `hasQuorum` asks for, ignoring the tie rules), for status. */
export function quorumSize (base: readonly string[] | null): number {
  if (base === null || base.length === 0) return 1
  if (base.length === 2) return 1
  return Math.floor(base.length / 2) + 1
}

/**
 * Which state wins: the later epoch (epochs grow only with a quorum, so a minority never gets ahead); in one
 * epoch the larger group, then the lower lead (two groups of one epoch only come from a 2-peer split); within
 * one group the later round. Positive when `a` wins.
 */
export function compareRank (a: GroupRank, b: GroupRank): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch
  if (a.size !== b.size) return a.size - b.size
  if (a.lead !== b.lead) return a.lead < b.lead ? 1 : -1
  return a.round - b.round
}

export function sameMembers (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(a)
  return b.every(p => set.has(p))
}

export function rankOf (group: Group | null, round: number): GroupRank {
  return { epoch: group?.epoch ?? 0, size: group?.members.length ?? 0, lead: group?.members[0] ?? '', round }
}
