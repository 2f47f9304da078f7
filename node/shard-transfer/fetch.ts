/**
 * The fetching side of `/peer/shard/1.0.0`: a shard by hash into a temporary
 * file, renamed only when the hash matches; a description checked against its
 * data set id; a whole data set (or some of its shards) from the first peer
 * that delivers each.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Registrar } from '../../protocols/common/index.ts'
import {
  DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS, InvalidMessageError, SHARD_PROTOCOL, ShardFetchError, ShardHashMismatchError, ShardNotFoundError,
  ShardUnavailableError, TimeoutError, decodeFrames, decodeResponse, encodeRequest, maxSize, prefixed
} from '../../protocols/shard/index.ts'
import type { ShardRequest } from '../../protocols/shard/index.ts'
import {
  DESCRIPTION_FILE, allShards, checkDescription, datasetsRoot, missingShards, readDescription, shardPath
} from '../data/imported/index.ts'
import type { DatasetDescription } from '../data/imported/index.ts'

/** The parts of a libp2p node the service (a registrar) and the fetchers (a dialer) use. */
export interface ShardNode extends Registrar {
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: { signal?: AbortSignal }) => Promise<Stream>
}

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
