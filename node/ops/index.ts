/**
 * Operations: metrics, the dashboard, swarm-wide status. `startOps(peer)` is
 * called by the peer once it has joined (trainer, rounds, api and network exist).
 */
import type { Peer } from '../peer/index.ts'

export interface Ops {
  stop: () => Promise<void>
}

export async function startOps (_peer: Peer): Promise<Ops> {
  return { stop: async () => {} }
}
