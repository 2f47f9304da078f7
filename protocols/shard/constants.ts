/** Protocol id parts, frame layout and limits of `/peer/shard/1.0.0`. */

export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'shard'
export const PROTOCOL_VERSION = '1.0.0'
/** `/peer/shard/1.0.0`: one stream per request; the asker sends one request frame, the holder answers and closes. */
export const SHARD_PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/**
 * Frame type tags (the first byte of every frame), the error frame's layout, the data frames' payload and the
 * reason's bound: those every transfer protocol shares (protocols/common/transfer.ts, as /peer/model/1.0.0).
 * CHUNK_BYTES, bytes of file per data frame, is yamux's initial receive window (256 KiB), so one frame never
 * waits on a window update half-way, and the per-frame costs (an await, a muxer frame, a write to the file)
 * are small next to it.
 */
export { CHUNK_BYTES, ERROR_HEADER_BYTES, FRAME_DATA, FRAME_ERROR, FRAME_HEADER, FRAME_REQUEST, MAX_REASON_BYTES } from '../common/index.ts'

/** What a request asks for (the second byte of a request frame). */
export const KIND_SHARD = 1
export const KIND_DESCRIPTION = 2

/** A shard is named by the sha256 of its file. */
export const SHARD_KEY_BYTES = 32
/** A description is named by its data set id, `ds-` and 16 hex digits: the 8 bytes those digits spell. */
export const DESCRIPTION_KEY_BYTES = 8
/** type u8, kind u8, then the key. */
export const REQUEST_HEADER_BYTES = 2
/** type u8, then the size of what follows as a little-endian u64 (below 2^53). */
export const HEADER_BYTES = 9

/** The largest frame: a data frame. A length prefix above this fails the stream before anything is allocated. */
export { MAX_ANSWER_FRAME_BYTES as MAX_FRAME_BYTES } from '../common/index.ts'
/** A shard is a few hundred MiB at most in practice; 64 GiB rejects absurd sizes in a header while leaving room. */
export const MAX_SHARD_BYTES = 64 * 1024 ** 3
/** The same bound as node/data's description reader (the longest part is the text columns' document frequencies). */
export const MAX_DESCRIPTION_BYTES = 8 * 1024 * 1024

/** A holder waits this long for the request after a stream opens: an asker sends it at once. */
export const REQUEST_TIMEOUT_MS = 10_000
/**
 * An asker gives up when no frame arrives for this long (the holder is gone or
 * stalled). Per frame, not per file, so a large shard on a slow link is fine:
 * a 256 KiB frame at 1 MB/s takes a quarter of a second.
 */
export const IDLE_TIMEOUT_MS = 15_000
/** Opening a stream: a TCP handshake and noise/yamux negotiation, well under a second on a LAN. */
export const DIAL_TIMEOUT_MS = 10_000

/**
 * Streams per connection: a peer fetching a data set asks one holder for one
 * shard at a time and spreads over several holders; four leaves room for a
 * retry and a description request without letting one peer take a holder's disk.
 */
export const MAX_INBOUND_STREAMS = 4
export const MAX_OUTBOUND_STREAMS = 4
