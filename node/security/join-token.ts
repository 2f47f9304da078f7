/**
 * Join tokens: everything another machine needs to join a private swarm, in one string a user can paste:
 * `peer1.<base64url of {"a":[bootstrap multiaddrs],"k":"<swarm key, base64url>"}>`. The prefix names the
 * format's version. A token holds the swarm key: whoever has it can join the swarm.
 */
import { multiaddr } from '@multiformats/multiaddr'
import {
  JOIN_TOKEN_PREFIX, MAX_JOIN_TOKEN_LENGTH, MAX_TOKEN_ADDRESSES, MAX_TOKEN_ADDRESS_LENGTH, SWARM_KEY_BYTES
} from './constants.ts'
import { InvalidJoinTokenError } from './errors.ts'

export interface JoinToken {
  /** Multiaddrs of swarm peers, each ending in /p2p/<peer id>. */
  addresses: string[]
  /** The swarm key (32 bytes). */
  key: Uint8Array
}

const BASE64URL = /^[A-Za-z0-9_-]+$/

/** True if the text looks like a join token (it may still be invalid); anything else is taken for a multiaddr. */
export function isJoinToken (text: string): boolean {
  return /^peer\d+\./.test(text)
}

/**
 * Orders addresses so that a joiner tries the likeliest first: routable and LAN addresses before loopback
 * (which only works on the same machine), and at most MAX_TOKEN_ADDRESSES of them.
 */
export function tokenAddresses (addresses: string[]): string[] {
  const loopback = (a: string): boolean => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/')
  const sorted = [...addresses.filter(a => !loopback(a)), ...addresses.filter(loopback)]
  return [...new Set(sorted)].filter(a => a.length <= MAX_TOKEN_ADDRESS_LENGTH).slice(0, MAX_TOKEN_ADDRESSES)
}

export function encodeJoinToken (token: JoinToken): string {
  if (token.key.byteLength !== SWARM_KEY_BYTES) throw new InvalidJoinTokenError(`a swarm key is ${SWARM_KEY_BYTES} bytes`)
  const addresses = tokenAddresses(token.addresses)
  if (addresses.length === 0) throw new InvalidJoinTokenError('a join token needs at least one address')
  for (const a of addresses) checkAddress(a)
  const body = JSON.stringify({ a: addresses, k: Buffer.from(token.key).toString('base64url') })
  return `${JOIN_TOKEN_PREFIX}${Buffer.from(body, 'utf8').toString('base64url')}`
}

/** Reads a join token; throws InvalidJoinTokenError (saying what is wrong, never echoing the key) on anything else. */
export function decodeJoinToken (text: string): JoinToken {
  const token = text.trim()
  if (token.length > MAX_JOIN_TOKEN_LENGTH) throw new InvalidJoinTokenError(`a join token is under ${MAX_JOIN_TOKEN_LENGTH} characters`)
  if (!token.startsWith(JOIN_TOKEN_PREFIX)) {
    const version = /^peer(\d+)\./.exec(token)?.[1]
    if (version !== undefined) throw new InvalidJoinTokenError(`a version ${version} join token: this peer reads version ${JOIN_TOKEN_PREFIX.slice(4, -1)} (upgrade it)`)
    throw new InvalidJoinTokenError(`a join token starts with ${JOIN_TOKEN_PREFIX}`)
  }
  const body = token.slice(JOIN_TOKEN_PREFIX.length)
  if (!BASE64URL.test(body)) throw new InvalidJoinTokenError('the join token is damaged (not base64url): copy it whole')
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(body, 'base64url')))
  } catch {
    throw new InvalidJoinTokenError('the join token is damaged (truncated?): copy it whole')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidJoinTokenError('the join token is damaged')
  const { a, k, ...rest } = value as { a?: unknown, k?: unknown }
  if (Object.keys(rest).length > 0) throw new InvalidJoinTokenError('the join token has unknown fields')
  if (!Array.isArray(a) || a.length === 0 || a.length > MAX_TOKEN_ADDRESSES) throw new InvalidJoinTokenError(`a join token carries 1 to ${MAX_TOKEN_ADDRESSES} addresses`)
  for (const addr of a) checkAddress(addr)
  if (typeof k !== 'string' || !BASE64URL.test(k)) throw new InvalidJoinTokenError('the join token carries no swarm key')
  const key = new Uint8Array(Buffer.from(k, 'base64url'))
  if (key.byteLength !== SWARM_KEY_BYTES || Buffer.from(key).toString('base64url') !== k) throw new InvalidJoinTokenError(`the join token's swarm key is not ${SWARM_KEY_BYTES} bytes`)
  return { addresses: a as string[], key }
}

function checkAddress (addr: unknown): void {
  if (typeof addr !== 'string' || addr.length === 0 || addr.length > MAX_TOKEN_ADDRESS_LENGTH) throw new InvalidJoinTokenError('a join token address is not a multiaddr')
  let ma
  try {
    ma = multiaddr(addr)
  } catch {
    throw new InvalidJoinTokenError(`a join token address is not a multiaddr: ${addr.slice(0, 80)}`)
  }
  if (ma.getPeerId() === null) throw new InvalidJoinTokenError(`a join token address lacks /p2p/<peer id>: ${addr.slice(0, 80)}`)
}
