/**
 * Hybrid logical clocks: wall time where clocks agree, a counter where they
 * tie, and the writer's peer id to break what is left, so that every pair of
 * writes is ordered the same way on every replica.
 */

export interface Hlc {
  /** Milliseconds since the epoch, as the writer saw them (at least). */
  wall: number
  /** Orders writes within the same millisecond. */
  counter: number
  /** The writer. */
  peer: string
}

/** Total order: wall, then counter, then peer id. */
export function compareHlc (a: Hlc, b: Hlc): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1
  if (a.peer !== b.peer) return a.peer < b.peer ? -1 : 1
  return 0
}

/** Remote clocks further ahead of ours than this are not followed (a peer with a broken clock cannot drag ours into the future). */
export const MAX_CLOCK_DRIFT_MS = 60_000

export class HlcClock {
  private readonly peer: string
  private readonly now: () => number
  private wall = 0
  private counter = 0

  constructor (peer: string, now: () => number = Date.now) {
    this.peer = peer
    this.now = now
  }

  /** A timestamp for a local write, greater than every timestamp seen so far. */
  tick (): Hlc {
    const pt = this.now()
    if (pt > this.wall) {
      this.wall = pt
      this.counter = 0
    } else {
      this.counter += 1
    }
    return { wall: this.wall, counter: this.counter, peer: this.peer }
  }

  /** Moves the clock past a timestamp received from another replica. */
  observe (remote: Hlc): void {
    const pt = this.now()
    if (remote.wall > pt + MAX_CLOCK_DRIFT_MS) return
    if (remote.wall > this.wall) {
      this.wall = remote.wall
      this.counter = remote.counter
    } else if (remote.wall === this.wall && remote.counter > this.counter) {
      this.counter = remote.counter
    }
  }
}
