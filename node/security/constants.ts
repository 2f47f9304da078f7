/** Names and limits of the swarm's secrets: the swarm key file, join tokens, allow-lists. */

/** The swarm key in the data dir (mode 0600), in the libp2p pre-shared key format (v1, base16). */
export const SWARM_KEY_FILE = 'swarm.key'

/** libp2p private networks use a 256-bit XSalsa20 key. */
export const SWARM_KEY_BYTES = 32

/** Header lines of the v1 pre-shared key format that `@libp2p/pnet` (and go-libp2p, IPFS) read. */
export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
export const SWARM_KEY_CODEC = '/base16/'

/** A key file is three short lines; anything longer is not one. */
export const MAX_SWARM_KEY_FILE_BYTES = 1024

/**
 * Join tokens start with `peer<version>.`: a later format gets a new number, and an older peer says so instead
 * of misreading it.
 */
export const JOIN_TOKEN_VERSION = 1
export const JOIN_TOKEN_PREFIX = `peer${JOIN_TOKEN_VERSION}.`

/** Bootstrap addresses per token: a peer listening on every interface has a handful; more is not a token. */
export const MAX_TOKEN_ADDRESSES = 16
export const MAX_TOKEN_ADDRESS_LENGTH = 512
/** A token of 16 long addresses is under 12 KiB; a pasted token longer than this is not ours. */
export const MAX_JOIN_TOKEN_LENGTH = 16 * 1024

/**
 * The addresses the peer last listened on (`peer start` writes it once its network is up), so that
 * `peer join-token` can print the token while the peer is not running.
 */
export const ADDRESSES_FILE = 'addresses.json'
/** A peer's addresses on every interface fit in a few KiB; a larger file is not ours. */
export const MAX_ADDRESSES_FILE_BYTES = 64 * 1024

/** An allow-list of 100,000 peer ids is ~5 MiB; a training swarm has far fewer members. */
export const MAX_ALLOW_LIST_BYTES = 8 * 1024 * 1024
export const MAX_ALLOW_LIST_ENTRIES = 100_000
