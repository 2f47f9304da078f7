/**
 * The fetching side of `/peer/shard/1.0.0`: a shard by hash into a temporary
 * file, renamed only when the hash matches; a description checked against its
 * data set id; a whole data set (or some of its shards) from the first peer
 * that delivers each. The stream loop, the temp file and the asking of
 * several peers are node/common/transfer.ts's, shared with node/models.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import {
  DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS, InvalidMessageError, MAX_FRAME_BYTES, REQUEST_TIMEOUT_MS, SHARD_PROTOCOL, ShardFetchError,
  ShardHashMismatchError, ShardNotFoundError, ShardUnavailableError, decodeRequest, decodeResponse, encodeRequest, maxSize
} from '../../protocols/shard/index.ts'
import type { ShardHeader, ShardRequest } from '../../protocols/shard/index.ts'
import { TempFiles, fetchFromFirst, fetchPayload, writeAll } from '../common/transfer.ts'
import type { PayloadSink, TransferNode, TransferProtocol } from '../common/transfer.ts'
import {
  DESCRIPTION_FILE, allShards, checkDescription, datasetsRoot, missingShards, readDescription, shardPath
} from '../data/imported/index.ts'
import type { DatasetDescription } from '../data/imported/index.ts'

/** The parts of a libp2p node the service (a registrar) and the fetchers (a dialer) use. */
export type ShardNode = TransferNode

/**
 * `/peer/shard/1.0.0` as node/common/transfer.ts moves it: a holder that answers not-found is
 * ShardNotFoundError (ask another), any other failure to deliver ShardFetchError.
 */
export const SHARD_TRANSFER: TransferProtocol<ShardRequest, ShardHeader> = {
  protocol: SHARD_PROTOCOL,
  what: 'shard',
  maxFrameBytes: MAX_FRAME_BYTES,
  requestTimeoutMs: REQUEST_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  dialTimeoutMs: DIAL_TIMEOUT_MS,
  decodeRequest,
  decodeResponse,
  failure: f => f.kind === 'refused' && f.beforeHeader && f.code === 'not-found'
    ? new ShardNotFoundError(`${f.peer}: ${f.reason ?? ''}`)
    : new ShardFetchError(f.message)
}

/**
 * Asks `peer` for `req` and passes what arrives to `sink`, once the header's
 * size is within what `req` allows. Throws ShardNotFoundError if the peer does
 * not have it, ShardFetchError if it fails part-way, InvalidMessageError on a
 * bad frame, TimeoutError if the peer goes quiet.
 */
async function request (node: ShardNode, peer: PeerId | string, req: ShardRequest, sink: Omit<PayloadSink<ShardHeader>, 'begin'>, signal?: AbortSignal): Promise<number> {
  return await fetchPayload(node, peer, SHARD_TRANSFER, encodeRequest(req), {
    ...sink,
    begin: head => {
      if (head.size > maxSize(req)) throw new InvalidMessageError(`announced size ${head.size} is over the limit of ${maxSize(req)}`)
      return head.size
    }
  }, signal)
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
  const tmp = new TempFiles(join(destDir, `.${sha256.slice(0, 16)}-${randomBytes(4).toString('hex')}.part`))
  const hash = createHash('sha256')
  const file = await tmp.create()
  const bytes = await request(node, peer, { kind: 'shard', sha256 }, {
    write: async (data, at) => {
      hash.update(data)
      await writeAll(file, data, 0, data.byteLength, at)
    },
    finish: async () => {
      const actual = hash.digest('hex')
      if (actual !== sha256) throw new ShardHashMismatchError(`${String(peer)} sent a shard that hashes to ${actual}, not ${sha256}: discarded`, sha256, actual)
      await tmp.close({ sync: true })
      await tmp.rename(dest)
    },
    discard: async () => { await tmp.discard() }
  }, signal)
  return { path: dest, bytes }
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
  await request(node, peer, { kind: 'description', datasetId }, {
    write: data => { parts.push(data.slice()) },
    finish: () => {},
    discard: () => {}
  }, signal)
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
  const { value: description } = await fetchFromFirst(peers, async peer => await fetchDescription(node, peer, datasetId, dataDir, options.signal),
    causes => new ShardUnavailableError(`no peer could send the description of ${datasetId}`, causes), options.signal)
  const dir = join(datasetsRoot(dataDir), datasetId)
  const wanted = new Set(options.shards !== undefined ? [...options.shards.map(i => description.shards[i]?.sha256), description.test.sha256] : allShards(description).map(s => s.sha256))
  const fetched: FetchDatasetResult['fetched'] = []
  for (const shard of missingShards(dir, description)) {
    if (!wanted.has(shard.sha256) || existsSync(shardPath(dir, shard))) continue
    await fetchFromFirst(peers, async peer => {
      const r = await fetchShard(node, peer, shard.sha256, dir, options.signal, { fileName: shard.file })
      const got = { sha256: shard.sha256, peer: String(peer), bytes: r.bytes }
      fetched.push(got)
      options.onShard?.(got)
    }, tried => new ShardUnavailableError(`no peer could send shard ${shard.index} (${shard.sha256}) of ${datasetId}`, tried), options.signal)
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
