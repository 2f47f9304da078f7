import { chmod, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ADDRESSES_FILE, MAX_ADDRESSES_FILE_BYTES, MAX_TOKEN_ADDRESS_LENGTH } from './constants.ts'
import { encodeJoinToken } from './join-token.ts'
import { readSwarmKey } from './swarm-key.ts'

/**
 * The join token of the peer on `dataDir` that listens on `addresses` (as its status lists them), or null if
 * its swarm is open (no key). `peer start` and `peer join-token` print it; scripts and tests that start swarms
 * use it.
 */
export async function joinTokenOf (dataDir: string, addresses: string[]): Promise<string | null> {
  const key = await readSwarmKey(dataDir)
  if (key === null) return null
  return encodeJoinToken({ addresses, key })
}

/** The addresses a peer listened on when it last ran on a data dir, and when it wrote them. */
export interface LastAddresses {
  addresses: string[]
  /** Milliseconds since the epoch. */
  at: number
}

/**
 * Keeps the addresses a peer listens on in the data dir (`addresses.json`), so that `peer join-token` can
 * print the token while no peer runs there. Written to a temp name and renamed: never half-written. Addresses
 * and the peer id are not secret; the file is 0600 like the rest of the data dir's files.
 */
export async function rememberAddresses (dataDir: string, addresses: string[], now = Date.now()): Promise<void> {
  const file = join(dataDir, ADDRESSES_FILE)
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify({ addresses, at: now } satisfies LastAddresses)}\n`, { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, file)
}

/** The addresses `rememberAddresses` kept, or null when there are none (or the file is not one it wrote). */
export async function lastAddresses (dataDir: string): Promise<LastAddresses | null> {
  const file = join(dataDir, ADDRESSES_FILE)
  let text: string
  try {
    if ((await stat(file)).size > MAX_ADDRESSES_FILE_BYTES) return null
    text = await readFile(file, 'utf8')
  } catch {
    return null
  }
  try {
    const value = JSON.parse(text) as Partial<LastAddresses>
    const { addresses, at } = value
    if (!Array.isArray(addresses) || typeof at !== 'number') return null
    if (!addresses.every(a => typeof a === 'string' && a.length > 0 && a.length <= MAX_TOKEN_ADDRESS_LENGTH)) return null
    return { addresses, at }
  } catch {
    return null
  }
}
