/**
 * Who trains which shard. Pure rules, applied by every peer on every tick to
 * its own view of the manifest:
 *
 * - Each live member's target is its fair share: floor(S/N) shards, plus one
 *   for the first S mod N members in peer-id order.
 * - A peer below its target claims shards that have no live owner; a peer above
 *   it releases the extra ones. Each peer ranks shards by a rendezvous hash of
 *   (shard, peer), so peers prefer different shards and rarely collide.
 * - Among free shards, a peer claims those whose data it already holds first
 *   (a replica, node/shard-transfer/placement.ts): it trains them at once.
 * - When two peers do claim one shard at once, the manifest's last-writer-wins
 *   merge picks the same winner on every replica; the loser claims another on
 *   its next tick.
 */
import { createHash } from 'node:crypto'

export interface ClaimView {
  me: string
  /** Every shard id of the job. */
  shards: string[]
  /** Current owner of each claimed shard (absent or null: unowned). */
  owners: Map<string, string | null>
  /** Members considered alive, this peer included. */
  live: string[]
  /** Shards whose data this peer already holds: among free shards it claims these first (no fetch before training them). */
  held?: Set<string>
}

export interface ClaimPlan {
  claim: string[]
  release: string[]
}

/** The number of shards `peer` should own when `live` share `shardCount` shards. */
export function targetShare (shardCount: number, live: string[], peer: string): number {
  const sorted = [...new Set(live)].sort()
  const i = sorted.indexOf(peer)
  if (i < 0 || sorted.length === 0) return 0
  const base = Math.floor(shardCount / sorted.length)
  return base + (i < shardCount % sorted.length ? 1 : 0)
}

/** Rendezvous ("highest random weight") score of a shard for a peer. */
export function score (shard: string, peer: string): number {
  return createHash('sha256').update(`${shard}\0${peer}`).digest().readUInt32BE(0)
}

export function planClaims (view: ClaimView): ClaimPlan {
  const live = new Set(view.live)
  const mine = view.shards.filter(s => view.owners.get(s) === view.me)
  const target = targetShare(view.shards.length, view.live, view.me)
  const byScore = (a: string, b: string): number => score(b, view.me) - score(a, view.me) || (a < b ? -1 : 1)
  if (mine.length > target) {
    // keep the shards this peer ranks highest; release the rest
    const ranked = [...mine].sort(byScore)
    return { claim: [], release: ranked.slice(target) }
  }
  if (mine.length < target) {
    const free = view.shards.filter(s => {
      const owner = view.owners.get(s)
      return owner === undefined || owner === null || !live.has(owner)
    })
    const held = view.held ?? new Set<string>()
    const byHeld = (a: string, b: string): number => Number(held.has(b)) - Number(held.has(a)) || byScore(a, b)
    return { claim: free.sort(byHeld).slice(0, target - mine.length), release: [] }
  }
  return { claim: [], release: [] }
}

/** Problems with an assignment: shards without a live owner. Empty when complete. */
export function unownedShards (shards: string[], owners: Map<string, string | null>, live: string[]): string[] {
  const alive = new Set(live)
  return shards.filter(s => {
    const o = owners.get(s)
    return o === undefined || o === null || !alive.has(o)
  })
}
