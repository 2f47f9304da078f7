/**
 * Where the shards of an imported data set live. Pure rules, applied by every
 * peer on its own view of the manifest (claims, live members, holder records)
 * and of its disk:
 *
 * - A shard's keepers are its owner (if live) and the R − 1 live members
 *   after it in peer-id order (fewer when fewer are live): each member keeps
 *   its predecessors' shards, about R/N of the data set. When a member goes,
 *   its successor already holds its shards, and claims prefer shards already
 *   held, so the successor takes them over without a fetch.
 * - A keeper that lacks its shard fetches it: the shards it owns first (the
 *   trainer waits for them), then its replicas.
 * - A replica counts only if a live member's holder record lists it (this
 *   peer's own disk counts for itself).
 * - A peer that is no keeper of a shard it holds may drop it only while R
 *   other live keepers hold it: those never drop it (they are keepers), so
 *   however many peers drop at once, R copies stay.
 */
import { score } from '../manifest/claims.ts'

export interface PlacementView {
  me: string
  /** The job's training shard ids. */
  shards: string[]
  /** Owner of each claimed shard (absent or null: unowned). */
  owners: Map<string, string | null>
  /** Live members, this peer included. */
  live: string[]
  /** Shards each peer's holder record lists (any member; only live ones count). */
  holders: Map<string, Set<string>>
  /** Shards whose files are on this peer's disk. */
  local: Set<string>
  /** R: copies wanted of every shard. */
  replicas: number
}

export interface Placement {
  /** Shards to fetch, most urgent first: owned by this peer, then kept by it. */
  fetch: string[]
  /** Shards held here that this peer no longer keeps and that R other live keepers hold: safe to drop. */
  drop: string[]
  /** Live copies of each shard (holders' records, this peer's disk for itself). */
  copies: Map<string, number>
  /** Shards with fewer than R live copies. */
  below: string[]
  /** Shards this peer keeps (owns or replicates). */
  kept: string[]
}

/**
 * The R live members that should hold `shard`: its live owner, then the members that follow the owner in
 * peer-id order (a ring), so each member keeps the replicas of its predecessors' shards and holds about R/N
 * of the data set when claims are balanced. A shard without a live owner: the R members ranking it highest.
 */
export function keepersOf (shard: string, owner: string | null | undefined, live: string[], replicas: number): string[] {
  const ring = [...new Set(live)].sort()
  const n = Math.min(replicas, ring.length)
  const at = owner === null || owner === undefined ? -1 : ring.indexOf(owner)
  if (at < 0) return ring.sort((a, b) => score(shard, b) - score(shard, a) || (a < b ? -1 : 1)).slice(0, n)
  return Array.from({ length: n }, (_, i) => ring[(at + i) % ring.length])
}

/** Live holders of each shard, this peer's disk standing in for its own record. */
export function liveHolders (view: Pick<PlacementView, 'me' | 'live' | 'holders' | 'local'>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  const add = (shard: string, peer: string): void => {
    let s = out.get(shard)
    if (s === undefined) out.set(shard, s = new Set())
    s.add(peer)
  }
  for (const peer of view.live) {
    const held = peer === view.me ? view.local : view.holders.get(peer)
    for (const shard of held ?? []) add(shard, peer)
  }
  return out
}

export function planPlacement (view: PlacementView): Placement {
  const holders = liveHolders(view)
  const owned: string[] = []
  const replicated: string[] = []
  const drop: string[] = []
  const kept: string[] = []
  const copies = new Map<string, number>()
  const below: string[] = []
  for (const shard of view.shards) {
    const owner = view.owners.get(shard)
    const keepers = keepersOf(shard, owner, view.live, view.replicas)
    const have = holders.get(shard) ?? new Set<string>()
    copies.set(shard, have.size)
    if (have.size < view.replicas) below.push(shard)
    if (keepers.includes(view.me)) {
      kept.push(shard)
      if (!view.local.has(shard)) (owner === view.me ? owned : replicated).push(shard)
    } else if (view.local.has(shard)) {
      const safe = keepers.filter(k => k !== view.me && have.has(k)).length
      if (safe >= view.replicas) drop.push(shard)
    }
  }
  // the rarest first among replicas: a shard with one copy left is the one at risk
  replicated.sort((a, b) => (copies.get(a) ?? 0) - (copies.get(b) ?? 0) || (a < b ? -1 : 1))
  return { fetch: [...owned, ...replicated], drop, copies, below, kept }
}
