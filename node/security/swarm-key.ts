/**
 * The swarm key: 32 random bytes every member of a private swarm shares. libp2p's private network layer
 * (`@libp2p/pnet`) encrypts every connection with it before anything else is said, so a node without it cannot
 * even start a handshake. The data dir keeps it in `swarm.key` (mode 0600) in the v1 pre-shared key format
 * that go-libp2p and IPFS use too.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  MAX_SWARM_KEY_FILE_BYTES, SWARM_KEY_BYTES, SWARM_KEY_CODEC, SWARM_KEY_FILE, SWARM_KEY_HEADER
} from './constants.ts'
import { InvalidSwarmKeyError, SwarmKeyConflictError, SwarmKeyRequiredError } from './errors.ts'

/** The data dir's peer identity file: present once a peer has run on the data dir (node/network/key.ts). */
const PEER_KEY_FILE = 'peer.key'

/** A fresh random swarm key. */
export function generateSwarmKey (): Uint8Array {
  return new Uint8Array(randomBytes(SWARM_KEY_BYTES))
}

/** The key in the v1 pre-shared key format: what `swarm.key` holds and what `preSharedKey({ psk })` reads. */
export function encodeSwarmKeyFile (key: Uint8Array): Uint8Array {
  checkKeyLength(key)
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_CODEC}\n${Buffer.from(key).toString('hex')}\n`)
}

/** Reads the v1 pre-shared key format (trailing whitespace allowed); throws InvalidSwarmKeyError on anything else. */
export function decodeSwarmKeyFile (bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength > MAX_SWARM_KEY_FILE_BYTES) throw new InvalidSwarmKeyError(`a swarm key file is under ${MAX_SWARM_KEY_FILE_BYTES} bytes; this one has ${bytes.byteLength}`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new InvalidSwarmKeyError('the swarm key file is not text')
  }
  const lines = text.trimEnd().split(/\r?\n/)
  if (lines.length !== 3 || lines[0] !== SWARM_KEY_HEADER || lines[1] !== SWARM_KEY_CODEC) {
    throw new InvalidSwarmKeyError(`a swarm key file has three lines: ${SWARM_KEY_HEADER}, ${SWARM_KEY_CODEC} and the key in hex`)
  }
  if (!new RegExp(`^[0-9a-fA-F]{${SWARM_KEY_BYTES * 2}}$`).test(lines[2])) throw new InvalidSwarmKeyError(`the key is not ${SWARM_KEY_BYTES * 2} hex digits`)
  return new Uint8Array(Buffer.from(lines[2], 'hex'))
}

/**
 * A short name of the key that says nothing about it (a hash), so that two peers' status can be compared:
 * equal fingerprints, same swarm key.
 */
export function swarmKeyFingerprint (key: Uint8Array): string {
  checkKeyLength(key)
  return createHash('sha256').update('peer swarm key fingerprint\0').update(key).digest('hex').slice(0, 16)
}

export function swarmKeysEqual (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b)
}

function checkKeyLength (key: Uint8Array): void {
  if (key.byteLength !== SWARM_KEY_BYTES) throw new InvalidSwarmKeyError(`a swarm key is ${SWARM_KEY_BYTES} bytes, not ${key.byteLength}`)
}

/** The data dir's swarm key, or null if it has none. Tightens the file's mode to 0600 if it was looser. */
export async function readSwarmKey (dataDir: string): Promise<Uint8Array | null> {
  const file = join(dataDir, SWARM_KEY_FILE)
  let bytes: Uint8Array
  try {
    const info = await stat(file)
    if (info.size > MAX_SWARM_KEY_FILE_BYTES) throw new InvalidSwarmKeyError(`${file}: not a swarm key (${info.size} bytes)`)
    if ((info.mode & 0o077) !== 0) await chmod(file, 0o600)
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    return decodeSwarmKeyFile(bytes)
  } catch (err) {
    throw new InvalidSwarmKeyError(`${file}: ${(err as Error).message}`)
  }
}

/** Writes the swarm key into a data dir that has none (mode 0600 from the start: never readable by others). */
export async function writeSwarmKey (dataDir: string, key: Uint8Array): Promise<void> {
  const file = join(dataDir, SWARM_KEY_FILE)
  await writeFile(file, encodeSwarmKeyFile(key), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
}

export interface SwarmKeyChoice {
  /** The key from a join token (`--join <token>`). */
  given?: Uint8Array | null
  /** `--open`: a swarm without a key. */
  open?: boolean
  /** Whether the peer joins through `--join` addresses. */
  joining?: boolean
}

export interface ResolvedSwarmKey {
  /** The swarm key, or null for an open swarm. */
  key: Uint8Array | null
  /**
   * Where it came from: `created` (this peer starts a new private swarm), `token` (stored from a join token),
   * `data-dir` (kept from an earlier start); for an open swarm, `open` (asked for with --open) or
   * `open-data-dir` (a data dir that ran without a key before).
   */
  source: 'created' | 'token' | 'data-dir' | 'open' | 'open-data-dir'
}

/** What a data dir says about its swarm: `private` (it holds a key), `open` (it ran before without one), `fresh`. */
export async function swarmMode (dataDir: string): Promise<'private' | 'open' | 'fresh'> {
  if (await readSwarmKey(dataDir) !== null) return 'private'
  return await exists(join(dataDir, PEER_KEY_FILE)) ? 'open' : 'fresh'
}

/**
 * Decides the swarm key of a peer starting on `dataDir`, and stores it there. A data dir's swarm is private or
 * open from its first start on:
 * - a key from a join token is stored (a data dir holding another key is refused: it belongs to another swarm);
 * - a data dir holding a key keeps it (`--open` is refused there); joining it by address is fine;
 * - `--open` runs without a key; so does a data dir that ran without one before;
 * - a fresh data dir that starts a swarm gets a new key: private unless asked otherwise; one that joins by
 *   address without `--open` is refused (SwarmKeyRequiredError): that takes the swarm's join token.
 * Call it before the peer identity is created (`loadOrCreateKey`): it tells a fresh data dir by its absence.
 */
export async function resolveSwarmKey (dataDir: string, choice: SwarmKeyChoice = {}): Promise<ResolvedSwarmKey> {
  const stored = await readSwarmKey(dataDir)
  const given = choice.given ?? null
  if (given !== null) {
    checkKeyLength(given)
    if (choice.open === true) throw new SwarmKeyConflictError('a join token carries a swarm key: it cannot be combined with --open')
    if (stored !== null) {
      if (!swarmKeysEqual(stored, given)) {
        throw new SwarmKeyConflictError(`data dir ${dataDir} belongs to another private swarm (its ${SWARM_KEY_FILE} differs from the join token's key); use a fresh --data-dir to join this one`)
      }
      return { key: stored, source: 'data-dir' }
    }
    await writeSwarmKey(dataDir, given)
    return { key: given, source: 'token' }
  }
  if (stored !== null) {
    if (choice.open === true) {
      throw new SwarmKeyConflictError(`data dir ${dataDir} belongs to a private swarm (it holds ${SWARM_KEY_FILE}): start it without --open, or use a fresh --data-dir for an open swarm`)
    }
    return { key: stored, source: 'data-dir' }
  }
  if (choice.open === true) return { key: null, source: 'open' }
  if (await exists(join(dataDir, PEER_KEY_FILE))) return { key: null, source: 'open-data-dir' }
  if (choice.joining === true) {
    throw new SwarmKeyRequiredError('joining a swarm takes its join token (`peer start --join <token>`, as the swarm\'s first peer printed it); to join an open swarm by address, add --open')
  }
  const key = generateSwarmKey()
  try {
    await writeSwarmKey(dataDir, key)
  } catch (err) {
    // another process made one at the same moment: use that
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return await resolveSwarmKey(dataDir, choice)
    throw err
  }
  return { key, source: 'created' }
}

async function exists (file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}
