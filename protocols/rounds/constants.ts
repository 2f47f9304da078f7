/** Topic and limits of round membership: who takes part in round r, in which order. */
export const PROTOCOL_PREFIX = '/peer'
export const TOPIC_NAME = 'rounds'
export const PROTOCOL_VERSION = '1.0.0'

/** A proposal lists every member of a round: 1,024 peer ids of ~52 characters stay under 64 KiB. */
export const MAX_MESSAGE_BYTES = 64 * 1024
export const MAX_MEMBERS = 1024
/**
 * How long a proposer waits for every live member's `ready` before it
 * proposes the round with those that are. A member that is syncing state
 * gets this long to finish, so it is several seconds, not milliseconds.
 */
export const DEFAULT_COLLECT_TIMEOUT_MS = 4000
/** How long a member waits for a proposal beyond the collect timeout before it tries the next attempt. */
export const PROPOSAL_GRACE_MS = 3000
