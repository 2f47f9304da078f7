/**
 * How long the last rounds took, as the trainer waits for them and as the ring
 * ran them: quantiles over a window of completed rounds, for `peer status` and
 * the scaling benchmark.
 *
 * The round's own overhead (what the rounds layer adds to the ring: member
 * checks, the group tag, the figures) is taken round by round, total minus
 * ring, then its median: a median of totals minus a median of ring times
 * mixes rounds and is not an overhead. The tail (p90, mean above p50) is where
 * the swarm loses time to a member that is late (its evaluation, a collection,
 * a checkpoint): every member waits for the slowest.
 */

/** Completed rounds the quantiles are taken over. */
export const TIMING_WINDOW = 256

/** Milliseconds, over the last `rounds` completed rounds (at most TIMING_WINDOW). */
export interface RoundTiming {
  rounds: number
  /** The round as the trainer waits for it (Rounds.round, call to return, ring included). */
  p50Ms: number
  p90Ms: number
  p99Ms: number
  meanMs: number
  /** The ring's own time (Ring.run). */
  ringP50Ms: number
  /** Median over rounds of (round − ring): what the rounds layer adds to the ring. */
  overheadP50Ms: number
}

export class RoundTimes {
  private readonly totals = new Float64Array(TIMING_WINDOW)
  private readonly rings = new Float64Array(TIMING_WINDOW)
  private count = 0

  /** One completed round: its time in the rounds layer and the ring's own. */
  record (totalMs: number, ringMs: number): void {
    const at = this.count % TIMING_WINDOW
    this.totals[at] = totalMs
    this.rings[at] = ringMs
    this.count += 1
  }

  summary (): RoundTiming | null {
    const n = Math.min(this.count, TIMING_WINDOW)
    if (n === 0) return null
    const totals = this.totals.slice(0, n)
    const rings = this.rings.slice(0, n)
    const overheads = totals.map((t, i) => t - rings[i])
    let sum = 0
    for (const t of totals) sum += t
    totals.sort()
    rings.sort()
    overheads.sort()
    return {
      rounds: n,
      p50Ms: round3(quantile(totals, 0.5)),
      p90Ms: round3(quantile(totals, 0.9)),
      p99Ms: round3(quantile(totals, 0.99)),
      meanMs: round3(sum / n),
      ringP50Ms: round3(quantile(rings, 0.5)),
      overheadP50Ms: round3(quantile(overheads, 0.5))
    }
  }
}

/** The nearest-rank quantile of sorted values. */
function quantile (sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

function round3 (x: number): number {
  return Math.round(x * 1000) / 1000
}
