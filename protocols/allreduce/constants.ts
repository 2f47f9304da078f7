/** Protocol id, frame layout and limits of the ring all-reduce. */

export const PROTOCOL_PREFIX = '/peer'
export const PROTOCOL_NAME = 'allreduce'
export const PROTOCOL_VERSION = '1.0.0'
/** `/peer/allreduce/1.0.0`: one persistent stream per ring neighbour and direction. */
export const PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/**
 * Carried in every hello: a peer speaking another frame layout aborts the round at the first frame instead of
 * misreading data. 2: small vectors (GATHER_MAX_BYTES) gather whole vectors, and the hello says so. 3: a round
 * may carry its vector as bfloat16 (the hello says so, and how many elements at its end stay float32), and every
 * data frame says which its payload is.
 */
export const WIRE_VERSION = 3

/**
 * How a round carries its vector, by the hello's compression byte: `none`, float32 as summed; `bf16`, every
 * element but the last `exact` rounded to bfloat16 (float32's upper half, rounded to nearest even) on the wire,
 * as DDP's bf16_compress_hook does: half the bytes, 8 bits of mantissa.
 */
export const COMPRESSIONS = ['none', 'bf16'] as const
export type Compression = typeof COMPRESSIONS[number]

/** Frame type tags, the first byte of every frame. */
export const FRAME_HELLO = 1
export const FRAME_DATA = 2
export const FRAME_ABORT = 3
/** Only on transports that do not authenticate the remote (plain TCP): the first frame names the sender. */
export const FRAME_IDENT = 4
/** The commit tokens that follow a round's data: "I and the k−1 members before me have the whole sum". */
export const FRAME_DONE = 5

/**
 * type u8, version u8, members u16, round u32, attempt u32, elements u32, index u16, gathers u8 (1: the round
 * gathers whole vectors, 0: it reduces chunks), compression u8 (COMPRESSIONS), member-list hash 32 bytes,
 * exact u32 (a bfloat16 round: the elements at the vector's end that travel as float32; 0 otherwise).
 */
export const HELLO_BYTES = 56
/**
 * type u8, format u8 (0: the payload is float32s, 4 bytes an element; 1: bfloat16s, 2 bytes), step u16, round
 * u32, attempt u32, chunk u32, offset u32, length u32 (elements). A multiple of 4, so that a payload at the start
 * of a freshly allocated frame is aligned for a Float32Array view.
 */
export const DATA_HEADER_BYTES = 24
/** type u8, code u8, culprit length u16, round u32, attempt u32, reason length u16, then culprit and reason (UTF-8). */
export const ABORT_HEADER_BYTES = 14
/** type u8, reserved u8, id length u16, then the id (UTF-8). */
export const IDENT_HEADER_BYTES = 4
/** type u8, reserved u8, count u16, round u32, attempt u32. */
export const DONE_BYTES = 12
/** SHA-256 of the ordered member list. */
export const MEMBERS_HASH_BYTES = 32

/**
 * Bytes of vector per data frame. Big enough that per-frame costs (header, an await, a muxer frame, a syscall)
 * are lost in the payload; small enough that a chunk of a few MiB is several blocks, so the next neighbour
 * starts adding and forwarding while this one is still sending, and that one block fits yamux's initial 256 KiB window.
 */
export const DEFAULT_BLOCK_BYTES = 256 * 1024
/** The largest block a receiver accepts: four times the default, so senders may tune the block size without a new protocol version. */
export const MAX_BLOCK_BYTES = 1024 * 1024
/** No frame is larger than a header plus the largest block; a length prefix above this aborts the round before anything is allocated. */
export const MAX_FRAME_BYTES = DATA_HEADER_BYTES + MAX_BLOCK_BYTES
/** The varint length prefix of a frame of at most MAX_FRAME_BYTES (< 2^21) takes at most 3 bytes. */
export const MAX_LENGTH_PREFIX_BYTES = 3

/**
 * A round gathers whole vectors instead of reducing chunks (see node/ring/layout.ts) when each member would
 * send at most this many bytes that way ((N − 1) · the vector): N − 1 hops instead of 2(N − 1), where a small
 * vector's time is hops, not bytes. Every member decides alike from the member count and the vector length,
 * and its hello says which way it goes (WIRE_VERSION 2).
 */
export const GATHER_MAX_BYTES = 256 * 1024

/** The hello's member count is a u16; beyond a thousand members a flat ring's 2(N−1) latency-bound steps make a hierarchical scheme the better tool. */
export const MAX_MEMBERS = 1024
/** Peer ids are strings: an Ed25519 peer id is 52 characters, an RSA one is longer; 128 bytes covers both with room. */
export const MAX_PEER_ID_BYTES = 128
/** An abort reason is a sentence for logs and status, not a document. */
export const MAX_REASON_BYTES = 256
/** Element counts, offsets, rounds and attempts are u32 on the wire (a 16 GiB vector is far beyond what a ring round should carry). */
export const MAX_U32 = 0xffff_ffff

/**
 * How long one step (one chunk received, added and forwarded) may take before the round aborts. A step of a
 * 64 MiB vector over four peers moves 16 MiB per link: about 0.1 s on loopback and well under 2 s at 100 MB/s;
 * 5 s keeps a stalled peer from holding the swarm for long (issue 5 asks for 10 s or less in all) without
 * aborting healthy rounds on a busy machine.
 */
export const DEFAULT_STEP_TIMEOUT_MS = 5_000
/**
 * A step moves one chunk (1/N of the vector) over each link: its timeout is the configured one plus the time the
 * chunk takes at this rate (bytes per ms; 12,500 is 100 Mbit/s), so that a 100 MB model's steps are not cut
 * short on a slow link while small vectors keep the short timeout.
 */
export const STEP_TIMEOUT_BYTES_PER_MS = 12_500
/**
 * How long the opening of a round (dial the successor, exchange hellos) may take. Members start a round when
 * they learn the agreed member list, which gossip delivers within about a second of each other; 5 s covers that skew.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000
/** Telling the successor why a round aborted is best effort: a queued frame, never worth delaying the result by more than this. */
export const ABORT_NOTIFY_TIMEOUT_MS = 500
/**
 * Opening a stream to a neighbour: a new connection is a TCP handshake plus noise and yamux negotiation, tens of
 * milliseconds on a LAN; 5 s is the same patience as the connect timeout. A round that gives up earlier leaves the
 * dial running for the next one.
 */
export const DIAL_TIMEOUT_MS = 5_000
/** A plain TCP connection must name its sender at once; one that does not within this time is dropped. */
export const IDENT_TIMEOUT_MS = 5_000

/**
 * Streams per connection for this protocol, in each direction: the ring needs one per neighbour and direction,
 * and one more while a failed stream is being replaced by a fresh one.
 */
export const MAX_INBOUND_STREAMS = 2
export const MAX_OUTBOUND_STREAMS = 2

/**
 * Bytes a channel queues before `send` waits: four default blocks keep the muxer and the socket busy while the
 * byte loop waits on its neighbour, and bound what is still in flight when a round aborts.
 */
export const SEND_HIGH_WATER_BYTES = 4 * DEFAULT_BLOCK_BYTES
