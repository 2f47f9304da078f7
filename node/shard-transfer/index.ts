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
 * Files: index.ts (the service and what it serves), fetch.ts (the fetchers),
 * placement.ts (the rules), replication.ts (the service that applies them);
 * the serve and fetch loops are node/common/transfer.ts's, shared with node/models.
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
import { existsSync, readdirSync } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { CHUNK_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, SHARD_PROTOCOL, encodeHeader, maxSize } from '../../protocols/shard/index.ts'
import type { ShardHeader, ShardRequest } from '../../protocols/shard/index.ts'
import { DESCRIPTION_FILE, allShards, datasetsRoot, isDatasetId, readDescription, shardPath } from '../data/imported/index.ts'
import type { DatasetDescription } from '../data/imported/index.ts'
import { TransferServer } from '../common/transfer.ts'
import type { ServeAnswer } from '../common/transfer.ts'
import { SHARD_TRANSFER } from './fetch.ts'
import type { ShardNode } from './fetch.ts'

export {
  InvalidMessageError, ShardFetchError, ShardHashMismatchError, ShardNotFoundError, ShardUnavailableError, TimeoutError, SHARD_PROTOCOL
} from '../../protocols/shard/index.ts'

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

/** Serves this peer's shard files and descriptions on `/peer/shard/1.0.0` (`served`, `bytesServed`: for status and benchmarks). */
export class ShardService extends TransferServer<ShardRequest, ShardHeader> {
  private readonly components: ShardServiceComponents

  constructor (components: ShardServiceComponents, init: ShardServiceInit = {}) {
    super(components.node, SHARD_TRANSFER, {
      maxInboundStreams: init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS
    }, components.logger)
    this.components = components
  }

  /** The file asked for, read in data frames of at most CHUNK_BYTES. */
  protected async answer (req: ShardRequest): Promise<ServeAnswer> {
    const path = req.kind === 'shard' ? this.components.store.shardPath(req.sha256) : this.components.store.descriptionPath(req.datasetId)
    if (path === null) return { type: 'error', code: 'not-found', reason: req.kind === 'shard' ? `no shard ${req.sha256}` : `no data set ${req.datasetId}` }
    let file: FileHandle
    try {
      file = await open(path, 'r')
    } catch (err) {
      return { type: 'error', code: 'unavailable', reason: (err as Error).message }
    }
    let size: number
    try {
      size = (await file.stat()).size
    } catch (err) {
      await file.close().catch(() => {})
      throw err
    }
    if (size > maxSize(req)) {
      await file.close().catch(() => {})
      return { type: 'error', code: 'unavailable', reason: `file of ${size} bytes is over the protocol's limit` }
    }
    return {
      type: 'payload',
      header: encodeHeader(size),
      chunks: (async function * () {
        let sent = 0
        while (sent < size) {
          // a fresh buffer per frame: the muxer may still hold the previous one
          const chunk = new Uint8Array(Math.min(CHUNK_BYTES, size - sent))
          const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, sent)
          if (bytesRead === 0) throw new Error(`${path} shrank while being served`)
          sent += bytesRead
          yield chunk.subarray(0, bytesRead)
        }
      })(),
      close: async () => { await file.close() }
    }
  }
}

export { fetchDataset, fetchDescription, fetchShard, localShards } from './fetch.ts'
export type { FetchDatasetOptions, FetchDatasetResult, FetchShardOptions, ShardNode } from './fetch.ts'
export { DEFAULT_REPLICAS, ReplicationService } from './replication.ts'
export type { HolderManifest, ReplicationComponents, ReplicationEvents, ReplicationInit, ReplicationStatus } from './replication.ts'
export { keepersOf, liveHolders, planPlacement } from './placement.ts'
export type { Placement, PlacementView } from './placement.ts'
