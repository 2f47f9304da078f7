/** Protocol id, message layout and limits of the ring's keyed data plane (`/peer/ring-key/1.0.0`). */

export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'ring-key'
export const PROTOCOL_VERSION = '1.0.0'
/**
 * `/peer/ring-key/1.0.0`: one short libp2p stream per data connection. The dialer (the ring member that will
 * send) asks, the listener answers with a session and its data-plane port, both close. It runs over libp2p so
 * that only a peer past the private network, noise and the allow-list can ever hold a session.
 */
export const KEY_PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** In both messages and in the data connection's preamble: a peer of another layout fails at once, not half-way. */
export const KEY_WIRE_VERSION = 1

/** Message type tags, the first byte of each message. */
export const MESSAGE_REQUEST = 1
export const MESSAGE_RESPONSE = 2

/** Each side's random contribution to the key: 256 bits, the key size of AES-256, so neither side alone decides it. */
export const KEY_SHARE_BYTES = 32
/** 128 random bits name a session on the data port, where it travels in the clear: unguessable, never reused. */
export const SESSION_ID_BYTES = 16
/** The derived per-connection key: AES-256-GCM and ChaCha20-Poly1305 both take 32 bytes. */
export const SESSION_KEY_BYTES = 32

/** type u8, version u8, dialer's key share. */
export const REQUEST_BYTES = 2 + KEY_SHARE_BYTES
/** type u8, version u8, data-plane port u16, session id, listener's key share. */
export const RESPONSE_BYTES = 4 + SESSION_ID_BYTES + KEY_SHARE_BYTES
/** Both messages are fixed-size; a length prefix above this fails the stream before anything is buffered. */
export const MAX_MESSAGE_BYTES = 64

/** The first bytes of a data connection, in the clear: version u8, then the session id. */
export const PREAMBLE_BYTES = 1 + SESSION_ID_BYTES
/** Every record: the plaintext length u32 (little-endian, authenticated as associated data), ciphertext, tag. */
export const RECORD_HEADER_BYTES = 4
/** The AEAD tag: 128 bits, the full tag of both ciphers (shorter tags weaken GCM's forgery bound). */
export const TAG_BYTES = 16
/** AEAD nonce: direction u32 (0: dialer to listener, the only direction data flows), then the record counter u64. */
export const NONCE_BYTES = 12
export const DIRECTION_DIALER_TO_LISTENER = 0
/**
 * The plaintext of record 0, the open record: this tag and the session id. A connection proves it holds the
 * session's key by sending it first; nothing else is read before it checks out.
 */
export const OPEN_MAGIC = 'peer/ring-key open'
export const OPEN_RECORD_BYTES = OPEN_MAGIC.length + SESSION_ID_BYTES
/**
 * The largest record a sealer or opener is ever configured for (16 MiB): a record length is checked against the
 * configured maximum (the ring's MAX_FRAME_BYTES: one ring frame per record) before anything is allocated.
 */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024
/**
 * Records one key may seal before the connection is closed and a new key agreed: 2^32, far inside both ciphers'
 * limits for counter nonces (a 256 KiB record each: 1 PiB), and far beyond what any connection carries.
 */
export const MAX_RECORDS_PER_KEY = 2 ** 32

/** The two ciphers node:crypto offers with a 32-byte key and a 16-byte tag; docs/ring.md says which is faster here. */
export type RecordCipher = 'aes-256-gcm' | 'chacha20-poly1305'
/**
 * AES-256-GCM: with AES-NI/VAES and carry-less multiply (every x86 server of the last decade), OpenSSL runs it
 * several times faster than ChaCha20-Poly1305 on large records; measured in docs/ring.md (`bench:allreduce`).
 */
export const DEFAULT_CIPHER: RecordCipher = 'aes-256-gcm'

/** The HKDF info that binds a key to this protocol (the two peer ids follow). */
export const KEY_INFO = 'peer/ring-key/1.0.0 dialer->listener'

/** The listener waits this long for the request once a key stream opens: the dialer sends it at once. */
export const KEY_REQUEST_TIMEOUT_MS = 5_000
/**
 * A session not claimed by a data connection within this is forgotten. The dialer connects right after the
 * answer (one TCP handshake); 10 s covers a busy event loop on either side.
 */
export const SESSION_TTL_MS = 10_000
/** A data connection must send its preamble and open record within this, or it is dropped. */
export const OPEN_TIMEOUT_MS = 5_000
/**
 * Sessions a peer may hold unclaimed at once: the ring needs one per neighbour, one more while a failed
 * connection is replaced; more is a peer that asks and never connects, and is refused.
 */
export const MAX_PENDING_SESSIONS_PER_PEER = 4
/** Data connections that have not yet proven a session: a port scan or a flood cannot hold more sockets than this. */
export const MAX_UNAUTHENTICATED_CONNECTIONS = 32
/** Key streams per libp2p connection and direction: one per exchange, one more racing a replacement. */
export const MAX_KEY_STREAMS = 2
