/** Protocol id parts and limits of `/peer/state-sync/1.0.0`. */
export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'state-sync'
export const PROTOCOL_VERSION = '1.0.0'

/** Parts are fetched independently (from several donors in parallel, and again after a failure): 1 MiB keeps a retry cheap. */
export const PART_BYTES = 1024 * 1024
/** A frame is a part plus one type byte. */
export const MAX_FRAME_BYTES = PART_BYTES + 1
/** Requests and metadata are small JSON objects. */
export const MAX_JSON_BYTES = 4096
/** The largest state accepted: a few hundred million parameters with Adam's two moments. */
export const MAX_STATE_BYTES = 4 * 1024 * 1024 * 1024
/** A part of 1 MiB on a slow link still arrives well within this. */
export const REQUEST_TIMEOUT_MS = 20_000
/** Requests per stream: a joiner asks for metadata then parts; this bounds one stream's work. */
export const MAX_REQUESTS_PER_STREAM = 8192
/** Concurrent state-sync streams a donor serves per connection. */
export const MAX_STREAMS = 8
/** Snapshots a donor keeps, so joiners that started on the previous round can finish. */
export const SNAPSHOTS_KEPT = 2
