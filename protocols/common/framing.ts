/**
 * Length-prefixed frames with a maximum size, the one framing every stream protocol here uses: each frame sits
 * behind an unsigned varint length prefix (the encoding `it-length-prefixed` writes). A reader is given the
 * largest frame it accepts and refuses a longer prefix, or a larger length, before it buffers a byte of the
 * frame; nothing larger than the limit is ever allocated.
 *
 * Errors: anything the bytes say is InvalidMessageError, `too-large` for a prefix or length over the limit,
 * `truncated` for a stream that ends inside a frame, `malformed` for an empty frame. Errors of the source
 * itself (a reset stream) pass through unchanged.
 */
import { pushable } from 'it-pushable'
import type { Stream } from '@libp2p/interface'
import { InvalidMessageError } from './errors.ts'

/** A byte source as libp2p streams give it: chunks, or lists of chunks (`Uint8ArrayList`). */
export type ByteSource = AsyncIterable<Uint8Array | Iterable<Uint8Array>>

/** The unsigned varint length prefix of a frame. */
export function encodeLengthPrefix (length: number): Uint8Array {
  const out: number[] = []
  let n = length
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/** A frame with its length prefix, ready to send. */
export function prefixed (frame: Uint8Array): Uint8Array {
  const prefix = encodeLengthPrefix(frame.byteLength)
  const out = new Uint8Array(prefix.byteLength + frame.byteLength)
  out.set(prefix)
  out.set(frame, prefix.byteLength)
  return out
}

/**
 * Cuts a byte stream into frames of 1 … `maxFrameBytes` bytes: feed it chunks as they arrive, get whole frames
 * back. A frame that lies inside one chunk comes back as a view of it; one that spans chunks is assembled in a
 * buffer of exactly its size, allocated only once its length prefix has been checked against the limit. A
 * length prefix longer than needed for `maxFrameBytes`, a frame above the limit or an empty frame throw
 * InvalidMessageError, and the decoder stays broken (every later call throws the same); `end()` throws one of
 * kind `truncated` if the stream stopped inside a frame.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number
  readonly #maxPrefixBytes: number
  #prefix = 0
  #prefixBytes = 0
  /** The frame being assembled across chunks, and how much of it is filled. */
  #partial: Uint8Array | null = null
  #filled = 0
  /** Bytes still to come of the current frame, or -1 while reading a length prefix. */
  #need = -1
  #failed: InvalidMessageError | null = null

  constructor (maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes >= 2 ** 28) throw new RangeError('maxFrameBytes must be 1 … 2^28−1')
    this.maxFrameBytes = maxFrameBytes
    let bytes = 1
    while (2 ** (7 * bytes) <= maxFrameBytes) bytes++
    this.#maxPrefixBytes = bytes
  }

  /** True between frames (nothing buffered). */
  get idle (): boolean {
    return this.#need === -1 && this.#prefixBytes === 0
  }

  /** The frames completed by `chunk` (views into it where a frame lies whole inside it). */
  push (chunk: Uint8Array): Uint8Array[] {
    if (this.#failed !== null) throw this.#failed
    const frames: Uint8Array[] = []
    let at = 0
    const end = chunk.byteLength
    while (at < end) {
      if (this.#need === -1) {
        const byte = chunk[at++]
        this.#prefix += (byte & 0x7f) * 2 ** (7 * this.#prefixBytes)
        this.#prefixBytes++
        if ((byte & 0x80) !== 0) {
          if (this.#prefixBytes >= this.#maxPrefixBytes) this.#fail(new InvalidMessageError(`length prefix longer than ${this.#maxPrefixBytes} bytes`, 'too-large'))
          continue
        }
        const length = this.#prefix
        this.#prefix = 0
        this.#prefixBytes = 0
        if (length === 0) this.#fail(new InvalidMessageError('empty frame'))
        if (length > this.maxFrameBytes) this.#fail(new InvalidMessageError(`frame length ${length} exceeds the limit of ${this.maxFrameBytes} bytes`, 'too-large'))
        if (end - at >= length) {
          frames.push(chunk.subarray(at, at + length))
          at += length
          continue
        }
        this.#need = length
        this.#partial = new Uint8Array(length)
        this.#filled = 0
        continue
      }
      const partial = this.#partial as Uint8Array
      const take = Math.min(this.#need, end - at)
      partial.set(chunk.subarray(at, at + take), this.#filled)
      this.#filled += take
      this.#need -= take
      at += take
      if (this.#need === 0) {
        frames.push(partial)
        this.#partial = null
        this.#need = -1
      }
    }
    return frames
  }

  /** The stream ended: throws if it ended inside a frame. */
  end (): void {
    if (this.#failed !== null) throw this.#failed
    if (!this.idle) this.#fail(new InvalidMessageError('stream ended inside a frame', 'truncated'))
  }

  #fail (err: InvalidMessageError): never {
    this.#failed = err
    this.#partial = null
    throw err
  }
}

/** The frames of a byte stream, in order (not yet interpreted). Stops pulling from `source` when the caller stops. */
export async function * decodeFrames (source: ByteSource, maxFrameBytes: number): AsyncGenerator<Uint8Array> {
  const decoder = new FrameDecoder(maxFrameBytes)
  for await (const chunk of source) {
    const parts = chunk instanceof Uint8Array ? [chunk] : chunk
    for (const part of parts) yield * decoder.push(part)
  }
  decoder.end()
}

/** The next frame of at most `maxFrameBytes`, or null if the stream ends first; reads nothing past it. */
export async function readFrame (source: ByteSource, maxFrameBytes: number): Promise<Uint8Array | null> {
  for await (const frame of decodeFrames(source, maxFrameBytes)) return frame
  return null
}

/** Writes `frames`, each with its length prefix, and closes the writing side. */
export async function writeFrames (stream: Pick<Stream, 'sink'>, ...frames: Uint8Array[]): Promise<void> {
  await stream.sink(frames.map(prefixed))
}

/** Several frames each way over one stream: a request/response conversation. */
export interface Framed {
  send: (frame: Uint8Array) => void
  /** The next frame, or null when the stream ended; rejects on an oversized or broken frame. */
  next: () => Promise<Uint8Array | null>
  /** Ends the writing side once what was sent is out, then closes the stream. */
  close: () => Promise<void>
  abort: (err: Error) => void
}

/** A request/response conversation over `stream` whose incoming frames are at most `maxFrameBytes`. */
export function framed (stream: Stream, maxFrameBytes: number): Framed {
  const out = pushable<Uint8Array>()
  const sinkDone = stream.sink((async function * () {
    for await (const frame of out) yield prefixed(frame)
  })()).catch(() => {})
  const frames = decodeFrames(stream.source, maxFrameBytes)
  return {
    send: frame => { out.push(frame) },
    next: async () => {
      const r = await frames.next()
      return r.done === true ? null : r.value
    },
    close: async () => {
      out.end()
      await sinkDone
      await stream.close().catch(() => {})
    },
    abort: err => {
      out.end(err)
      stream.abort(err)
    }
  }
}
