/** How often a peer writes its heartbeat and revisits its claims. */
export const DEFAULT_HEARTBEAT_MS = 1000
/** A member not heard from for this long is dead and its shards are free: five missed heartbeats. */
export const DEFAULT_MEMBER_TIMEOUT_MS = 5000
