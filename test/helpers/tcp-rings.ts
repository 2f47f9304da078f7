/** Ring members in this process for trainer-level tests: one real ring per id, over plain TCP sockets on 127.0.0.1. */
import { Ring, createTcpRingTransport } from '../../node/ring/index.ts'
import type { TcpAddress } from '../../node/ring/index.ts'

/** Started rings, one per id (in order), that know each other's addresses; stop them with `stopRings`. */
export async function startTcpRings (ids: string[]): Promise<Ring[]> {
  const addresses = new Map<string, TcpAddress>()
  const transports = ids.map(self => createTcpRingTransport({ self, resolve: peer => addresses.get(peer) }))
  const rings = transports.map(transport => new Ring({ transport }))
  try {
    for (const [i, r] of rings.entries()) {
      await r.start()
      addresses.set(ids[i], transports[i].address())
    }
  } catch (err) {
    await stopRings(rings)
    throw err
  }
  return rings
}

export async function stopRings (rings: Ring[]): Promise<void> {
  for (const r of rings) await r.stop().catch(() => {})
}
