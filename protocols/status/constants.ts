/** Protocol id parts, limits and timeouts of `/peer/status/1.0.0`. */
export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'status'
export const PROTOCOL_VERSION = '1.0.0'

/** A request is one small JSON object (`{"op":"status"}`): 256 bytes leave room for later fields, nothing more. */
export const MAX_REQUEST_BYTES = 256
/**
 * A response is one member's summary. Its largest part is the ring's member
 * list: MAX_MEMBERS peer ids of ~52 characters take ~55 KiB, so 64 KiB
 * bounds it; anything larger is refused before it is parsed.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024
/** The ring member list a summary may carry (the same bound as a round proposal's). */
export const MAX_MEMBERS = 1024
/**
 * How long one request may take, dial included: the answer is built from
 * memory, so a member that needs longer is busy or gone, and `status --swarm`
 * should show it as unreachable rather than wait.
 */
export const REQUEST_TIMEOUT_MS = 5000
/** Concurrent status streams per connection: a swarm-wide view asks each member once, a dashboard every few seconds. */
export const MAX_STREAMS = 4
