/**
 * Moving one content-addressed payload over a transfer protocol (protocols/common/transfer.ts: one request per
 * stream, answered by an error frame, or by a header and data frames of at most CHUNK_BYTES), the loops that
 * node/models (model files, `/peer/model/1.0.0`) and node/shard-transfer (shard files and descriptions,
 * `/peer/shard/1.0.0`) share. Each protocol is a `TransferProtocol`: its id, limits, request and answer
 * decoders, and the error a holder that did not deliver becomes.
 *
 * - The holder: a `TransferServer` registers the protocol while started, reads each stream's one request
 *   (bounded, within a deadline), sends what its `answer` says (an error frame, or the header and the payload
 *   cut into data frames), counts, and aborts the stream on a failure.
 * - The asker: `fetchPayload` asks one holder and hands what arrives to a `PayloadSink` (which hashes and writes
 *   it to a temporary file, and renames it into place in `finish` only when the hash is right; `discard`
 *   removes it on any failure); `fetchFromFirst` asks several holders in turn until one delivers.
 * - `TempFiles`: files written under a temporary path, removed unless renamed into place.
 */
import { mkdirSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { IncomingStreamData, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidMessageError, ProtocolService, TimeoutError, decodeFrames, encodeData, encodeError, prefixed } from '../../protocols/common/index.ts'
import type { Registrar, TransferErrorCode, TransferResponse } from '../../protocols/common/index.ts'

/** The parts of a libp2p node a transfer service (a registrar) and its fetchers (a dialer) use. */
export interface TransferNode extends Registrar {
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal }) => Promise<Stream>
}

/** Why a holder did not deliver, for the protocol's `failure` to name. */
export interface TransferFailure {
  /** `no-answer`: the stream closed before the first frame; `ended`: before the last byte; `refused`: an error frame. */
  kind: 'no-answer' | 'ended' | 'refused'
  /** True while no header has arrived (a refusal before the header is an answer to the request). */
  beforeHeader: boolean
  /** What went wrong, naming the peer: `<peer> closed the stream without answering`, `<peer>: <code>: <reason>`, … */
  message: string
  peer: string
  /** The error frame's code and reason, for `refused`. */
  code?: TransferErrorCode
  reason?: string
}

/** One transfer protocol: its id, limits and decoders, and what its fetchers throw. */
export interface TransferProtocol<Req, H> {
  protocol: string
  /** What it moves, for log lines (`model`, `shard`). */
  what: string
  /** The largest frame either side reads. */
  maxFrameBytes: number
  /** How long a holder waits for the request, and an asker for each frame, and to open a stream. */
  requestTimeoutMs: number
  idleTimeoutMs: number
  dialTimeoutMs: number
  decodeRequest: (frame: Uint8Array) => Req
  decodeResponse: (frame: Uint8Array) => TransferResponse<H>
  /** The error a holder that did not deliver becomes (bad frames stay InvalidMessageError, silence TimeoutError). */
  failure: (f: TransferFailure) => Error
}

/** `p`, or TimeoutError once `ms` pass with nothing (the signal's reason where it aborts first). */
export async function within<T> (p: Promise<T>, ms: number, what: string, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new TimeoutError(`${what}: nothing for ${ms} ms`)) }, ms)
        if (signal !== undefined) {
          onAbort = () => { reject(signal.reason instanceof Error ? signal.reason : new TimeoutError(`${what}: aborted`)) }
          if (signal.aborted) onAbort()
          else signal.addEventListener('abort', onAbort, { once: true })
        }
      })
    ])
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
  }
}

export function toPeerId (peer: PeerId | string): PeerId {
  return typeof peer === 'string' ? peerIdFromString(peer) : peer
}

// ---- the holder ----

/** What a holder sends for a valid request: an error frame, or the header frame and the payload. */
export type ServeAnswer =
  | { type: 'error', code: TransferErrorCode, reason: string }
  | {
    type: 'payload'
    /** The encoded header frame. */
    header: Uint8Array
    /** The payload in pieces of 1 … CHUNK_BYTES bytes, each sent as one data frame (encodeData copies it). */
    chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>
    /** Releases what the chunks read from (a file), however the answer ended. */
    close?: () => Promise<void>
  }

/** Streams of the protocol per connection, each way. */
export interface StreamLimits {
  maxInboundStreams: number
  maxOutboundStreams: number
}

/**
 * A holder's side of a transfer protocol, a ProtocolService (`start`, `stop`, `isStarted`): answers each
 * stream's one request with what `answer` says. Building one does no work.
 */
export abstract class TransferServer<Req, H> extends ProtocolService {
  /** Answers sent in full, the payload bytes they carried, and requests answered bad-request (for status and tests). */
  served = 0
  bytesServed = 0
  invalid = 0
  private readonly proto: TransferProtocol<Req, H>
  private readonly logger: Logger | undefined

  constructor (registrar: Registrar, proto: TransferProtocol<Req, H>, limits: StreamLimits, logger?: Logger) {
    super(registrar, { protocol: proto.protocol, ...limits })
    this.proto = proto
    this.logger = logger
  }

  protected onStream ({ stream }: IncomingStreamData): void {
    void this.serve(stream)
  }

  /** What to send for a valid request. A throw aborts the stream. */
  protected abstract answer (req: Req): ServeAnswer | Promise<ServeAnswer>

  /** Answers the one request of `stream`; never throws (a failure is logged and aborts the stream). */
  private async serve (stream: Stream): Promise<void> {
    let close: (() => Promise<void>) | undefined
    try {
      const req = await readRequest(stream, this.proto)
      if (req === null) {
        this.invalid++
        await stream.sink([prefixed(encodeError('bad-request', 'expected one valid request frame'))])
        return
      }
      const answer = await this.answer(req)
      if (answer.type === 'error') {
        await stream.sink([prefixed(encodeError(answer.code, answer.reason))])
        return
      }
      close = answer.close
      const { header, chunks } = answer
      const self = this
      await stream.sink((async function * () {
        yield prefixed(header)
        let sent = 0
        for await (const chunk of chunks) {
          sent += chunk.byteLength
          yield prefixed(encodeData(chunk))
        }
        self.bytesServed += sent
      })())
      this.served++
    } catch (err) {
      this.logger?.debug({ err: (err as Error).message }, `${this.proto.what} stream ended with an error`)
      stream.abort(err as Error)
    } finally {
      await close?.().catch(() => {})
    }
  }
}

/** The one request frame of a stream, or null if the first frame is not a valid request. */
async function readRequest<Req, H> (stream: Stream, proto: TransferProtocol<Req, H>): Promise<Req | null> {
  const frames = decodeFrames(stream.source, proto.maxFrameBytes)
  try {
    const first = await within(frames.next(), proto.requestTimeoutMs, 'waiting for the request')
    if (first.done === true) return null
    return proto.decodeRequest(first.value)
  } catch (err) {
    if ((err as Error).name === 'InvalidMessageError') return null
    throw err
  } finally {
    void frames.return(undefined).catch(() => {})
  }
}

// ---- the asker ----

/** Where a fetched payload goes: written as it arrives, checked and put in place at the end, or discarded. */
export interface PayloadSink<H> {
  /** The header arrived: how many bytes follow. Throw to refuse it (InvalidMessageError for a size over a limit). */
  begin: (head: H) => number | Promise<number>
  /** The next `bytes`, at offset `at` of the payload. */
  write: (bytes: Uint8Array, at: number) => void | Promise<void>
  /** Every byte arrived and the stream is closed: check them (the hash) and put them in place. */
  finish: () => void | Promise<void>
  /** Anything failed (a finish too): remove what was written. */
  discard: () => void | Promise<void>
}

/**
 * Sends `request` to `peer` and passes the answer to `sink`. Returns the payload's size. Throws what the
 * protocol's `failure` makes of a holder that did not deliver, InvalidMessageError on a bad frame (or one the
 * sink refused), TimeoutError if the peer goes quiet, and what the sink threw; in every case after `discard`.
 */
export async function fetchPayload<Req, H> (node: Pick<TransferNode, 'dialProtocol'>, peer: PeerId | string, proto: TransferProtocol<Req, H>, request: Uint8Array, sink: PayloadSink<H>, signal?: AbortSignal): Promise<number> {
  try {
    const total = await receive(node, peer, proto, request, sink, signal)
    await sink.finish()
    return total
  } catch (err) {
    await sink.discard()
    throw err
  }
}

async function receive<Req, H> (node: Pick<TransferNode, 'dialProtocol'>, peer: PeerId | string, proto: TransferProtocol<Req, H>, request: Uint8Array, sink: PayloadSink<H>, signal?: AbortSignal): Promise<number> {
  const name = String(peer)
  const stream = await node.dialProtocol(toPeerId(peer), proto.protocol, { signal: signal ?? AbortSignal.timeout(proto.dialTimeoutMs) })
  try {
    await stream.sink([prefixed(request)])
    const frames = decodeFrames(stream.source, proto.maxFrameBytes)
    const first = await within(frames.next(), proto.idleTimeoutMs, `${name}: waiting for the answer`, signal)
    if (first.done === true) throw proto.failure({ kind: 'no-answer', beforeHeader: true, peer: name, message: `${name} closed the stream without answering` })
    const head = proto.decodeResponse(first.value)
    if (head.type === 'error') throw proto.failure({ kind: 'refused', beforeHeader: true, peer: name, code: head.code, reason: head.reason, message: `${name}: ${head.code}: ${head.reason}` })
    if (head.type !== 'header') throw new InvalidMessageError('expected a header frame first')
    const total = await sink.begin(head)
    let received = 0
    while (received < total) {
      const next = await within(frames.next(), proto.idleTimeoutMs, `${name}: waiting for data`, signal)
      if (next.done === true) throw proto.failure({ kind: 'ended', beforeHeader: false, peer: name, message: `${name} ended the stream after ${received} of ${total} bytes` })
      const r = proto.decodeResponse(next.value)
      if (r.type === 'error') throw proto.failure({ kind: 'refused', beforeHeader: false, peer: name, code: r.code, reason: r.reason, message: `${name}: ${r.code}: ${r.reason}` })
      if (r.type !== 'data') throw new InvalidMessageError('expected a data frame')
      if (received + r.bytes.byteLength > total) throw new InvalidMessageError(`more bytes than the ${total} announced`)
      const at = received
      received += r.bytes.byteLength
      await sink.write(r.bytes, at)
    }
    await stream.close().catch(() => {})
    return received
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** What each holder asked answered, when none delivered. */
export type Causes = Array<{ peer: string, error: string }>

/**
 * `attempt` with each of `peers` in turn until one succeeds: that peer and its result. An abort of `signal`
 * ends it at once (rethrown); otherwise, when none succeeds, throws `unavailable(causes)`.
 */
export async function fetchFromFirst<T> (peers: Array<PeerId | string>, attempt: (peer: PeerId | string) => Promise<T>, unavailable: (causes: Causes) => Error, signal?: AbortSignal): Promise<{ peer: string, value: T }> {
  const causes: Causes = []
  for (const peer of peers) {
    try {
      return { peer: String(peer), value: await attempt(peer) }
    } catch (err) {
      if (signal?.aborted === true) throw err
      causes.push({ peer: String(peer), error: `${(err as Error).name}: ${(err as Error).message}` })
    }
  }
  throw unavailable(causes)
}

/**
 * Files written under a temporary path (a file, or a directory of files), renamed into place only when
 * complete: `rename` puts it in place, `discard` closes what is open and removes whatever is left.
 */
export class TempFiles {
  readonly path: string
  private readonly files: FileHandle[] = []

  constructor (path: string) {
    this.path = path
  }

  /** A temporary directory at `path`, created now. */
  static dir (path: string): TempFiles {
    mkdirSync(path)
    return new TempFiles(path)
  }

  /** Creates `path` (the temporary path itself, or a file inside the temporary directory) for writing. */
  async create (path: string = this.path): Promise<FileHandle> {
    const file = await open(path, 'wx')
    this.files.push(file)
    return file
  }

  /** Closes every file, each flushed to the disk first where `sync`. */
  async close (options: { sync?: boolean } = {}): Promise<void> {
    for (const file of this.files.splice(0)) {
      if (options.sync === true) await file.sync()
      await file.close()
    }
  }

  /** Closes the files and renames the temporary path to `dest`. */
  async rename (dest: string): Promise<void> {
    await this.close()
    await rename(this.path, dest)
  }

  /** Closes what is still open and removes the temporary path (nothing after `rename`). */
  async discard (): Promise<void> {
    for (const file of this.files.splice(0)) await file.close().catch(() => {})
    await rm(this.path, { recursive: true, force: true })
  }
}

/** Writes `length` bytes of `bytes` from `offset` to `file` at `position`, all of them (a write may take fewer). */
export async function writeAll (file: FileHandle, bytes: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) done += (await file.write(bytes, offset + done, length - done, position + done)).bytesWritten
}
