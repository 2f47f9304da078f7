/** Protocol id parts, frame layout and limits of `/peer/model/1.0.0`. */

export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'model'
export const PROTOCOL_VERSION = '1.0.0'
/** `/peer/model/1.0.0`: one stream per request; the asker sends one request frame, the holder answers and closes. */
export const MODEL_PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/**
 * Frame type tags (the first byte of every frame), the error frame's layout, the data frames' payload and the
 * reason's bound: those every transfer protocol shares (protocols/common/transfer.ts, as /peer/shard/1.0.0).
 */
export { CHUNK_BYTES, ERROR_HEADER_BYTES, FRAME_DATA, FRAME_ERROR, FRAME_HEADER, FRAME_REQUEST, MAX_REASON_BYTES } from '../common/index.ts'

/** A model is asked for by its id, `mdl-` and 16 hex digits: the 8 bytes those digits spell. */
export const MODEL_KEY_BYTES = 8
/** type u8, then the key. */
export const REQUEST_BYTES = 1 + MODEL_KEY_BYTES
/** type u8, then the model.json's size and the weights' size, each a little-endian u64 (below 2^53). */
export const HEADER_BYTES = 17

/**
 * The largest model.json: a topology is a few KiB per layer (a converted
 * ResNet-50's is ~300 KiB); 16 MiB leaves room for thousands of layers and
 * refuses absurd sizes before anything is buffered.
 */
export const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024
/**
 * The largest weights file: 1 GiB is 256 M float32 parameters, ten times the
 * issue's 25 M-parameter case. The trainer holds the weights in memory anyway.
 */
export const MAX_WEIGHTS_BYTES = 1024 ** 3

/** The largest frame: a data frame. A length prefix above this fails the stream before anything is allocated. */
export { MAX_ANSWER_FRAME_BYTES as MAX_FRAME_BYTES } from '../common/index.ts'

/** A holder waits this long for the request after a stream opens: an asker sends it at once. */
export const REQUEST_TIMEOUT_MS = 10_000
/** An asker gives up when no frame arrives for this long (per frame, so a large model on a slow link is fine). */
export const IDLE_TIMEOUT_MS = 15_000
/** Opening a stream: a TCP handshake and noise/yamux negotiation, well under a second on a LAN. */
export const DIAL_TIMEOUT_MS = 10_000
/** A joiner asks one holder at a time; two leave room for a retry. */
export const MAX_INBOUND_STREAMS = 2
export const MAX_OUTBOUND_STREAMS = 2
