import { encodeJoinToken } from './join-token.ts'
import { readSwarmKey } from './swarm-key.ts'

/**
 * The join token of the peer on `dataDir` that listens on `addresses` (as its status lists them), or null if
 * its swarm is open (no key). `peer start` prints it; scripts and tests that start swarms use it.
 */
export async function joinTokenOf (dataDir: string, addresses: string[]): Promise<string | null> {
  const key = await readSwarmKey(dataDir)
  if (key === null) return null
  return encodeJoinToken({ addresses, key })
}
