/**
 * Serving and fetching stored models over `/peer/model/1.0.0`. A fetch writes
 * into a temp dir beside the store while hashing, and renames it into place
 * only when the bytes hash to the id asked for and parse as a model; on any
 * failure nothing is left behind and the next peer is asked.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ProtocolHandler, decodeFrames, prefixed } from '../../protocols/common/index.ts'
import type { Registrar } from '../../protocols/common/index.ts'
import {
  CHUNK_BYTES, DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS, InvalidMessageError, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS,
  MODEL_PROTOCOL, ModelUnavailableError, REQUEST_TIMEOUT_MS, TimeoutError, decodeRequest, decodeResponse, encodeData, encodeError,
  encodeHeader, encodeRequest
} from '../../protocols/model/index.ts'
import { MODEL_FILE, WEIGHTS_FILE, hasModel, loadModel, modelsRoot, readModelFiles } from './store.ts'

/** The parts of a libp2p node the service (a registrar) and the fetcher (a dialer) use. */
export interface ModelNode extends Registrar {
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal }) => Promise<Stream>
}

export interface ModelServiceComponents {
  node: ModelNode
  dataDir: string
  logger?: Logger
}

/** Serves the data dir's stored models on `/peer/model/1.0.0`. */
export class ModelService {
  private readonly components: ModelServiceComponents
  private readonly handler: ProtocolHandler
  /** Models served in full, and requests dropped as malformed (for status and tests). */
  served = 0
  invalid = 0

  constructor (components: ModelServiceComponents) {
    this.components = components
    this.handler = new ProtocolHandler(components.node, {
      protocol: MODEL_PROTOCOL,
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS
    }, ({ stream }) => { void this.serve(stream) })
  }

  get isStarted (): boolean {
    return this.handler.isStarted
  }

  async start (): Promise<void> {
    await this.handler.start()
  }

  async stop (): Promise<void> {
    await this.handler.stop()
  }

  private async serve (stream: Stream): Promise<void> {
    try {
      const id = await readRequest(stream)
      if (id === null) {
        this.invalid++
        await stream.sink([prefixed(encodeError('bad-request', 'expected one valid request frame'))])
        return
      }
      if (!hasModel(this.components.dataDir, id)) {
        await stream.sink([prefixed(encodeError('not-found', `no model ${id}`))])
        return
      }
      let files
      try {
        files = readModelFiles(this.components.dataDir, id)
      } catch (err) {
        await stream.sink([prefixed(encodeError('unavailable', (err as Error).message))])
        return
      }
      const all = [files.modelJson, files.weights]
      await stream.sink((function * () {
        yield prefixed(encodeHeader(files.modelJson.byteLength, files.weights.byteLength))
        for (const part of all) {
          // encodeData copies: the muxer may still hold a frame when the next is cut
          for (let at = 0; at < part.byteLength; at += CHUNK_BYTES) yield prefixed(encodeData(part.subarray(at, at + CHUNK_BYTES)))
        }
      })())
      this.served++
    } catch (err) {
      this.components.logger?.debug({ err: (err as Error).message }, 'model stream ended with an error')
      stream.abort(err as Error)
    }
  }
}

/** The one request frame of a stream, or null if the first frame is not a valid request. */
async function readRequest (stream: Stream): Promise<string | null> {
  const frames = decodeFrames(stream.source, MAX_FRAME_BYTES)
  try {
    const first = await within(frames.next(), REQUEST_TIMEOUT_MS, 'waiting for the request')
    if (first.done === true) return null
    return decodeRequest(first.value)
  } catch (err) {
    if ((err as Error).name === 'InvalidMessageError') return null
    throw err
  } finally {
    void frames.return(undefined).catch(() => {})
  }
}

async function within<T> (p: Promise<T>, ms: number, what: string, signal?: AbortSignal): Promise<T> {
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

/** The model ids' hash, computed as store.ts's modelIdOf does, incrementally. */
function idHasher (jsonBytes: number): { update: (b: Uint8Array) => void, id: () => string } {
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(jsonBytes))
  const hash = createHash('sha256').update('peer-model/1\n').update(length)
  return { update: b => { hash.update(b) }, id: () => `mdl-${hash.digest('hex').slice(0, 16)}` }
}

/**
 * Fetches model `id` from `peer` into the data dir's store. Throws
 * InvalidMessageError (a bad frame, a wrong hash: the bytes are discarded),
 * TimeoutError, or an Error saying what the peer answered.
 */
export async function fetchModelFrom (node: ModelNode, peer: PeerId | string, id: string, dataDir: string, signal?: AbortSignal): Promise<{ bytes: number }> {
  const root = modelsRoot(dataDir)
  mkdirSync(root, { recursive: true })
  const tmp = join(root, `.fetch-${process.pid}-${randomBytes(4).toString('hex')}`)
  const pid = typeof peer === 'string' ? peerIdFromString(peer) : peer
  const stream = await node.dialProtocol(pid, MODEL_PROTOCOL, { signal: signal ?? AbortSignal.timeout(DIAL_TIMEOUT_MS) })
  const files: FileHandle[] = []
  try {
    mkdirSync(tmp)
    await stream.sink([prefixed(encodeRequest(id))])
    const frames = decodeFrames(stream.source, MAX_FRAME_BYTES)
    const next = async (what: string): Promise<Uint8Array | null> => {
      const r = await within(frames.next(), IDLE_TIMEOUT_MS, `${String(peer)}: waiting for ${what}`, signal)
      return r.done === true ? null : r.value
    }
    const first = await next('the answer')
    if (first === null) throw new Error(`${String(peer)} closed the stream without answering`)
    const head = decodeResponse(first)
    if (head.type === 'error') throw new Error(`${String(peer)}: ${head.code}: ${head.reason}`)
    if (head.type !== 'header') throw new InvalidMessageError('expected a header frame first')
    const hasher = idHasher(head.jsonBytes)
    const json = await open(join(tmp, MODEL_FILE), 'wx')
    files.push(json)
    const weights = head.weightsBytes > 0 ? await open(join(tmp, WEIGHTS_FILE), 'wx') : null
    if (weights !== null) files.push(weights)
    const total = head.jsonBytes + head.weightsBytes
    let received = 0
    while (received < total) {
      const frame = await next('data')
      if (frame === null) throw new Error(`${String(peer)} ended the stream after ${received} of ${total} bytes`)
      const r = decodeResponse(frame)
      if (r.type === 'error') throw new Error(`${String(peer)}: ${r.code}: ${r.reason}`)
      if (r.type !== 'data') throw new InvalidMessageError('expected a data frame')
      if (received + r.bytes.byteLength > total) throw new InvalidMessageError(`more bytes than the ${total} announced`)
      hasher.update(r.bytes)
      // a frame may straddle model.json and the weights
      const toJson = Math.max(0, Math.min(r.bytes.byteLength, head.jsonBytes - received))
      if (toJson > 0) await json.write(r.bytes, 0, toJson, received)
      if (toJson < r.bytes.byteLength && weights !== null) await weights.write(r.bytes, toJson, r.bytes.byteLength - toJson, received + toJson - head.jsonBytes)
      received += r.bytes.byteLength
    }
    await stream.close().catch(() => {})
    const actual = hasher.id()
    if (actual !== id) throw new InvalidMessageError(`${String(peer)} sent a model that hashes to ${actual}, not ${id}: discarded`)
    for (const f of files.splice(0)) await f.close()
    const dir = join(root, id)
    if (!existsSync(join(dir, MODEL_FILE))) {
      rmSync(dir, { recursive: true, force: true })
      await rename(tmp, dir)
    }
    return { bytes: total }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    for (const f of files) await f.close().catch(() => {})
    await rm(tmp, { recursive: true, force: true })
  }
}

/**
 * Makes model `id` present in the data dir: from the first of `peers` that
 * sends it with the right hash, checked to parse as a model. Throws
 * ModelUnavailableError, saying what each peer answered, when none can.
 */
export async function fetchModel (node: ModelNode, peers: Array<PeerId | string>, id: string, dataDir: string, signal?: AbortSignal): Promise<{ peer: string, bytes: number, ms: number }> {
  const started = performance.now()
  const causes: Array<{ peer: string, error: string }> = []
  for (const peer of peers) {
    try {
      const r = await fetchModelFrom(node, peer, id, dataDir, signal)
      try {
        loadModel(dataDir, id)
      } catch (err) {
        // right hash, bad model: the creator stored it so; nobody has a better one
        rmSync(join(modelsRoot(dataDir), id), { recursive: true, force: true })
        throw err
      }
      return { peer: String(peer), bytes: r.bytes, ms: performance.now() - started }
    } catch (err) {
      if (signal?.aborted === true) throw err
      causes.push({ peer: String(peer), error: `${(err as Error).name}: ${(err as Error).message}` })
    }
  }
  throw new ModelUnavailableError(`no peer could send model ${id}${causes.length > 0 ? `: ${causes.map(c => `${c.peer}: ${c.error}`).join('; ')}` : ' (no peers to ask)'}`, causes)
}
