/**
 * Whom a peer that catches up takes the swarm's state from: the members whose state wins (docs/rounds.md,
 * "Partitions"): the later group epoch, then the larger group, then the lower lead, then, within one group,
 * the later round. Never simply the highest round: a peer cut off from the swarm could otherwise win with a
 * model it trained alone.
 */
import { compareRank } from '../rounds/index.ts'
import type { GroupRank } from '../rounds/index.ts'

export interface Candidate {
  peer: string
  rank: GroupRank
}

/** The candidates holding the winning state, if it beats `mine`; empty when this peer's own state wins. */
export function winningDonors (mine: GroupRank, candidates: readonly Candidate[]): string[] {
  const ahead = candidates.filter(c => compareRank(c.rank, mine) > 0)
  if (ahead.length === 0) return []
  const best = ahead.reduce((a, b) => compareRank(b.rank, a.rank) > 0 ? b : a)
  return ahead.filter(c => compareRank(c.rank, best.rank) === 0).map(c => c.peer).sort()
}
