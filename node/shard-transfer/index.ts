/**
 * Shard transfer (which peer owns which shard is decided in
 * node/manifest/claims.ts; this folder only moves the bytes): a peer that
 * holds a data set serves its shard files (and its description) over
 * `/peer/shard/1.0.0`; a peer that needs one fetches it by hash from a peer
 * that has it, writes it to a temporary file,
 * checks the sha256 and only then renames it into place, so nothing
 * half-written or corrupt is ever read as a shard. A hash mismatch throws
 * ShardHashMismatchError and leaves nothing behind, so the caller can ask
 * another peer (`fetchDataset` does that for a whole data set).
 *
 * Where each shard lives (placement.ts, replication.ts): a peer holds the
 * shards it owns and those it keeps as one of R replicas, fetches them as its
 * claims change, says what it holds in the manifest (`holders/<peer>`), and
 * drops a shard only while R other live keepers hold it.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const service = new ShardService({ node, store: createDataDirShardStore(dataDir), logger })
 * await service.start()                      // registers /peer/shard/1.0.0
 * await fetchShard(node, holder, sha256, dir, AbortSignal.timeout(60_000))
 * await fetchDataset(node, [holderA, holderB], 'ds-0123456789abcdef', dataDir)   // description + missing shards
 * await service.stop()
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ProtocolHandler } from '../../protocols/common/index.ts'
import type { Registrar } from '../../protocols/common/index.ts'
import {
  CHUNK_BYTES, DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS, InvalidMessageError, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, REQUEST_TIMEOUT_MS,
  SHARD_PROTOCOL, ShardFetchError, ShardHashMismatchError, ShardNotFoundError, ShardUnavailableError, TimeoutError,
  decodeFrames, decodeRequest, decodeResponse, encodeData, encodeError, encodeHeader, encodeRequest, maxSize, prefixed
} from '../../protocols/shard/index.ts'
import type { ShardRequest } from '../../protocols/shard/index.ts'
import {
  DESCRIPTION_FILE, allShards, checkDescription, datasetsRoot, isDatasetId, missingShards, readDescription, shardPath
} from '../data/imported/index.ts'
import type { DatasetDescription } from '../data/imported/index.ts'

export {
  InvalidMessageError, ShardFetchError, ShardHashMismatchError, ShardNotFoundError, ShardUnavailableError, TimeoutError, SHARD_PROTOCOL
} from '../../protocols/shard/index.ts'

/** The parts of a libp2p node the service (a registrar) and the fetchers (a dialer) use. */
export interface ShardNode extends Registrar {
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal }) => Promise<Stream>
}

/** Where a holder finds what it serves. */
export interface ShardStore {
  /** The file of the shard with this sha256, or null if this peer does not hold it. */
  shardPath: (sha256: string) => string | null
  /** The description file of this data set, or null. */
  descriptionPath: (datasetId: string) => string | null
}

/** Rescan the data dir for new data sets at most this often when asked for an unknown hash (a miss is cheap to repeat). */
const RESCAN_MS = 1000

/**
 * The shards of every data set under `<dataDir>/datasets/`: a shard is served
 * only if a description there lists its hash and its file is present.
 */
export function createDataDirShardStore (dataDir: string): ShardStore {
  const root = datasetsRoot(dataDir)
  let byHash = new Map<string, string>()
  let scanned = -Infinity
  const scan = (): void => {
    const next = new Map<string, string>()
    let names: string[] = []
    try { names = readdirSync(root) } catch {}
    for (const id of names.filter(isDatasetId)) {
      const dir = join(root, id)
      let d: DatasetDescription
      try { d = readDescription(dir, id) } catch { continue }
      for (const s of allShards(d)) next.set(s.sha256, shardPath(dir, s))
    }
    byHash = next
    scanned = Date.now()
  }
  return {
    shardPath: sha256 => {
      let path = byHash.get(sha256)
      if (path === undefined && Date.now() - scanned > RESCAN_MS) {
        scan()
        path = byHash.get(sha256)
      }
      return path !== undefined && existsSync(path) ? path : null
    },
    descriptionPath: id => {
      if (!isDatasetId(id)) return null
      const path = join(root, id, DESCRIPTION_FILE)
      return existsSync(path) ? path : null
    }
  }
}

export interface ShardServiceComponents {
  node: ShardNode
  store: ShardStore
  logger?: Logger
}

export interface ShardServiceInit {
  /** Streams per connection (default MAX_INBOUND_STREAMS). */
  maxInboundStreams?: number
}

/** Serves this peer's shard files and descriptions on `/peer/shard/1.0.0`. */
export class ShardService {
  private readonly components: ShardServiceComponents
  private readonly handler: ProtocolHandler
  /** Files served in full, and their bytes (for status and benchmarks). */
  served = 0
  bytesServed = 0

  constructor (components: ShardServiceComponents, init: ShardServiceInit = {}) {
    this.components = components
    this.handler = new ProtocolHandler(components.node, {
      protocol: SHARD_PROTOCOL,
      maxInboundStreams: init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
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
    const log = this.components.logger
    let file: FileHandle | null = null
    try {
      const req = await readRequest(stream)
      if (req === null) {
        await stream.sink([prefixed(encodeError('bad-request', 'expected one valid request frame'))])
        return
      }
      const path = req.kind === 'shard' ? this.components.store.shardPath(req.sha256) : this.components.store.descriptionPath(req.datasetId)
      if (path === null) {
        await stream.sink([prefixed(encodeError('not-found', req.kind === 'shard' ? `no shard ${req.sha256}` : `no data set ${req.datasetId}`))])
        return
      }
      try {
        file = await open(path, 'r')
      } catch (err) {
        await stream.sink([prefixed(encodeError('unavailable', (err as Error).message))])
        return
      }
      const size = (await file.stat()).size
      if (size > maxSize(req)) {
        await stream.sink([prefixed(encodeError('unavailable', `file of ${size} bytes is over the protocol's limit`))])
        return
      }
      const handle = file
      const self = this
      await stream.sink((async function * () {
        yield prefixed(encodeHeader(size))
        let sent = 0
        while (sent < size) {
          // a fresh buffer per frame: the muxer may still hold the previous one
          const chunk = new Uint8Array(Math.min(CHUNK_BYTES, size - sent))
          const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, sent)
          if (bytesRead === 0) throw new Error(`${path} shrank while being served`)
          sent += bytesRead
          yield prefixed(encodeData(chunk.subarray(0, bytesRead)))
        }
        self.bytesServed += sent
      })())
      this.served++
    } catch (err) {
      log?.debug({ err: (err as Error).message }, 'shard stream ended with an error')
      stream.abort(err as Error)
    } finally {
      await file?.close().catch(() => {})
    }
  }
}

/** The one request frame of a stream, or null if the first frame is not a valid request. */
async function readRequest (stream: Stream): Promise<ShardRequest | null> {
  const frames = decodeFrames(stream.source)
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

function toPeerId (peer: PeerId | string): PeerId {
  return typeof peer === 'string' ? peerIdFromString(peer) : peer
}

/**
 * Asks `peer` for `req` and passes each received chunk to `onData` (the size
 * first to `onHeader`). Throws ShardNotFoundError if the peer does not have
 * it, ShardFetchError if it fails part-way, InvalidMessageError on a bad
 * frame, TimeoutError if the peer goes quiet.
 */
async function request (node: ShardNode, peer: PeerId | string, req: ShardRequest, onHeader: (size: number) => Promise<void> | void, onData: (bytes: Uint8Array) => Promise<void> | void, signal?: AbortSignal): Promise<number> {
  const stream = await node.dialProtocol(toPeerId(peer), SHARD_PROTOCOL, { signal: signal ?? AbortSignal.timeout(DIAL_TIMEOUT_MS) })
  try {
    await stream.sink([prefixed(encodeRequest(req))])
    const frames = decodeFrames(stream.source)
    const first = await within(frames.next(), IDLE_TIMEOUT_MS, `${String(peer)}: waiting for the answer`, signal)
    if (first.done === true) throw new ShardFetchError(`${String(peer)} closed the stream without answering`)
    const head = decodeResponse(first.value)
    if (head.type === 'error') {
      if (head.code === 'not-found') throw new ShardNotFoundError(`${String(peer)}: ${head.reason}`)
      throw new ShardFetchError(`${String(peer)}: ${head.code}: ${head.reason}`)
    }
    if (head.type !== 'header') throw new InvalidMessageError('expected a header frame first')
    if (head.size > maxSize(req)) throw new InvalidMessageError(`announced size ${head.size} is over the limit of ${maxSize(req)}`)
    await onHeader(head.size)
    let received = 0
    while (received < head.size) {
      const next = await within(frames.next(), IDLE_TIMEOUT_MS, `${String(peer)}: waiting for data`, signal)
      if (next.done === true) throw new ShardFetchError(`${String(peer)} ended the stream after ${received} of ${head.size} bytes`)
      const r = decodeResponse(next.value)
      if (r.type === 'error') throw new ShardFetchError(`${String(peer)}: ${r.code}: ${r.reason}`)
      if (r.type !== 'data') throw new InvalidMessageError('expected a data frame')
      if (received + r.bytes.byteLength > head.size) throw new InvalidMessageError(`more bytes than the ${head.size} announced`)
      received += r.bytes.byteLength
      await onData(r.bytes)
    }
    await stream.close().catch(() => {})
    return received
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

export interface FetchShardOptions {
  /** File name in destDir (default `<sha256>.arrow`, the name data sets use). */
  fileName?: string
}

/**
 * Fetches the shard whose file hashes to `sha256` from `peer` into
 * `destDir/<sha256>.arrow`: a temporary file first, renamed only when the
 * hash matches. Returns the path and the bytes received. On any failure the
 * temporary file is removed; a mismatch throws ShardHashMismatchError.
 */
export async function fetchShard (node: ShardNode, peer: PeerId | string, sha256: string, destDir: string, signal?: AbortSignal, options: FetchShardOptions = {}): Promise<{ path: string, bytes: number }> {
  const dest = join(destDir, options.fileName ?? `${sha256}.arrow`)
  const tmp = join(destDir, `.${sha256.slice(0, 16)}-${randomBytes(4).toString('hex')}.part`)
  const hash = createHash('sha256')
  const file = await open(tmp, 'wx')
  let closed = false
  try {
    let at = 0
    const bytes = await request(node, peer, { kind: 'shard', sha256 }, () => {}, async data => {
      hash.update(data)
      let done = 0
      while (done < data.byteLength) done += (await file.write(data, done, data.byteLength - done, at + done)).bytesWritten
      at += data.byteLength
    }, signal)
    const actual = hash.digest('hex')
    if (actual !== sha256) throw new ShardHashMismatchError(`${String(peer)} sent a shard that hashes to ${actual}, not ${sha256}: discarded`, sha256, actual)
    await file.sync()
    await file.close()
    closed = true
    await rename(tmp, dest)
    return { path: dest, bytes }
  } catch (err) {
    if (!closed) await file.close().catch(() => {})
    await rm(tmp, { force: true })
    throw err
  }
}

/**
 * Fetches a data set's description from `peer`, checks that it hashes to
 * `datasetId`, and installs it as `<dataDir>/datasets/<id>/dataset.json`
 * (a temporary directory renamed into place). Keeps an existing one.
 */
export async function fetchDescription (node: ShardNode, peer: PeerId | string, datasetId: string, dataDir: string, signal?: AbortSignal): Promise<DatasetDescription> {
  const root = datasetsRoot(dataDir)
  const dir = join(root, datasetId)
  if (existsSync(join(dir, DESCRIPTION_FILE))) return readDescription(dir, datasetId)
  const parts: Uint8Array[] = []
  await request(node, peer, { kind: 'description', datasetId }, () => {}, data => { parts.push(data.slice()) }, signal)
  const text = Buffer.concat(parts).toString('utf8')
  let description: DatasetDescription
  try {
    description = checkDescription(text, datasetId, `the description ${String(peer)} sent`)
  } catch (err) {
    throw new ShardHashMismatchError((err as Error).message, datasetId, '')
  }
  mkdirSync(root, { recursive: true })
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp)
  try {
    writeFileSync(join(tmp, DESCRIPTION_FILE), text)
    if (existsSync(dir)) {
      // a shard fetch made the directory first; move the description in
      if (!existsSync(join(dir, DESCRIPTION_FILE))) renameSync(join(tmp, DESCRIPTION_FILE), join(dir, DESCRIPTION_FILE))
      rmSync(tmp, { recursive: true, force: true })
    } else {
      renameSync(tmp, dir)
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    throw err
  }
  return description
}

export interface FetchDatasetOptions {
  signal?: AbortSignal
  /** Only these training shards (by index); the test shard is always fetched. Default: all. */
  shards?: number[]
  /** Called after each shard that arrived. */
  onShard?: (s: { sha256: string, peer: string, bytes: number }) => void
}

export interface FetchDatasetResult {
  description: DatasetDescription
  fetched: Array<{ sha256: string, peer: string, bytes: number }>
  bytes: number
  ms: number
}

/**
 * Makes `<dataDir>/datasets/<id>/` complete (or complete for `options.shards`):
 * the description from the first peer that has it, then each missing shard
 * from the first of `peers` that delivers it with the right hash. Throws
 * ShardUnavailableError, saying what each peer answered, when none can.
 */
export async function fetchDataset (node: ShardNode, peers: Array<PeerId | string>, datasetId: string, dataDir: string, options: FetchDatasetOptions = {}): Promise<FetchDatasetResult> {
  const started = Date.now()
  const causes: Array<{ peer: string, error: string }> = []
  let description: DatasetDescription | undefined
  for (const peer of peers) {
    try {
      description = await fetchDescription(node, peer, datasetId, dataDir, options.signal)
      break
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      causes.push({ peer: String(peer), error: `${(err as Error).name}: ${(err as Error).message}` })
    }
  }
  if (description === undefined) throw new ShardUnavailableError(`no peer could send the description of ${datasetId}`, causes)
  const dir = join(datasetsRoot(dataDir), datasetId)
  const wanted = new Set(options.shards !== undefined ? [...options.shards.map(i => description.shards[i]?.sha256), description.test.sha256] : allShards(description).map(s => s.sha256))
  const fetched: FetchDatasetResult['fetched'] = []
  for (const shard of missingShards(dir, description)) {
    if (!wanted.has(shard.sha256) || existsSync(shardPath(dir, shard))) continue
    const tried: Array<{ peer: string, error: string }> = []
    let ok = false
    for (const peer of peers) {
      try {
        const r = await fetchShard(node, peer, shard.sha256, dir, options.signal, { fileName: shard.file })
        const got = { sha256: shard.sha256, peer: String(peer), bytes: r.bytes }
        fetched.push(got)
        options.onShard?.(got)
        ok = true
        break
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        tried.push({ peer: String(peer), error: `${(err as Error).name}: ${(err as Error).message}` })
      }
    }
    if (!ok) throw new ShardUnavailableError(`no peer could send shard ${shard.index} (${shard.sha256}) of ${datasetId}`, tried)
  }
  return { description, fetched, bytes: fetched.reduce((n, f) => n + f.bytes, 0), ms: Date.now() - started }
}

/** Hashes of the shard files of a data set that this data dir holds (training and test), for status. */
export function localShards (dataDir: string, datasetId: string): string[] {
  const dir = join(datasetsRoot(dataDir), datasetId)
  let d: DatasetDescription
  try { d = readDescription(dir, datasetId) } catch { return [] }
  return allShards(d).filter(s => {
    try { return statSync(shardPath(dir, s)).isFile() } catch { return false }
  }).map(s => s.sha256)
}

export { DEFAULT_REPLICAS, ReplicationService } from './replication.ts'
export type { HolderManifest, ReplicationComponents, ReplicationEvents, ReplicationInit, ReplicationStatus } from './replication.ts'
export { keepersOf, liveHolders, planPlacement } from './placement.ts'
export type { Placement, PlacementView } from './placement.ts'
