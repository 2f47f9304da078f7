/** Protocol ids and limits of the manifest's gossip and sync. */

export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_VERSION = '1.0.0'

/** Gossip topic carrying manifest deltas, one per job: `/peer/manifest/1.0.0/<jobId>`. */
export const MANIFEST_TOPIC_NAME = 'manifest'
/** Full-state reconciliation on every new connection (gossip does not replay what a peer missed). */
export const SYNC_PROTOCOL_NAME = 'manifest-sync'

/** A delta holds one tick's writes of one peer: a few claims and a heartbeat. 256 KiB leaves room for 1,024 shard claims at once. */
export const MAX_DELTA_BYTES = 256 * 1024
/** A full manifest of 1,024 shards with claims and a few hundred members is well under 1 MiB; 8 MiB bounds a hostile peer. */
export const MAX_SYNC_BYTES = 8 * 1024 * 1024
/** Entries per delta and per sync message. */
export const MAX_DELTA_ENTRIES = 4096
export const MAX_SYNC_ENTRIES = 65536
/** Shards one holder record may list: an import cuts at most 1,024 (node/data/imported MAX_SHARDS); 1,024 ids are ~8 KiB. */
export const MAX_HELD_SHARDS = 1024
/** Keys are short paths (`claims/s0012`, `members/12D3Koo…`). */
export const MAX_KEY_LENGTH = 256
/** A sync exchange is two small messages; a peer that takes longer is not worth waiting for. */
export const SYNC_TIMEOUT_MS = 10_000
/** One sync at a time per peer is all the protocol needs; a few allow for reconnects racing. */
export const MAX_SYNC_STREAMS = 4
