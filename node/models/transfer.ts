/**
 * Serving and fetching stored models over `/peer/model/1.0.0`. A fetch writes
 * into a temp dir beside the store while hashing, and renames it into place
 * only when the bytes hash to the id asked for and parse as a model; on any
 * failure nothing is left behind and the next peer is asked. The serve and
 * fetch loops, the temp files and the asking of several peers are
 * node/common/transfer.ts's, shared with node/shard-transfer; this file says
 * what a model's payload is (model.json, then the weights) and how its id is hashed.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { PeerId } from '@libp2p/interface'
import {
  CHUNK_BYTES, DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS, InvalidMessageError, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS,
  MODEL_PROTOCOL, ModelUnavailableError, REQUEST_TIMEOUT_MS, decodeRequest, decodeResponse, encodeHeader, encodeRequest
} from '../../protocols/model/index.ts'
import type { ModelHeader } from '../../protocols/model/index.ts'
import { TempFiles, TransferServer, fetchFromFirst, fetchPayload, writeAll } from '../common/transfer.ts'
import type { ServeAnswer, TransferNode, TransferProtocol } from '../common/transfer.ts'
import { MODEL_FILE, WEIGHTS_FILE, hasModel, loadModel, modelsRoot, readModelFiles } from './store.ts'

/** The parts of a libp2p node the service (a registrar) and the fetcher (a dialer) use. */
export type ModelNode = TransferNode

/** `/peer/model/1.0.0` as node/common/transfer.ts moves it: a holder that did not deliver is a plain Error naming it. */
const MODEL_TRANSFER: TransferProtocol<string, ModelHeader> = {
  protocol: MODEL_PROTOCOL,
  what: 'model',
  maxFrameBytes: MAX_FRAME_BYTES,
  requestTimeoutMs: REQUEST_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  dialTimeoutMs: DIAL_TIMEOUT_MS,
  decodeRequest,
  decodeResponse,
  failure: f => new Error(f.message)
}

export interface ModelServiceComponents {
  node: ModelNode
  dataDir: string
  logger?: Logger
}

/** Serves the data dir's stored models on `/peer/model/1.0.0` (`served`, `invalid`: for status and tests). */
export class ModelService extends TransferServer<string, ModelHeader> {
  private readonly components: ModelServiceComponents

  constructor (components: ModelServiceComponents) {
    super(components.node, MODEL_TRANSFER, { maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS }, components.logger)
    this.components = components
  }

  /** model.json then the weights, in data frames of at most CHUNK_BYTES (a frame may straddle the two). */
  protected answer (id: string): ServeAnswer {
    if (!hasModel(this.components.dataDir, id)) return { type: 'error', code: 'not-found', reason: `no model ${id}` }
    let files
    try {
      files = readModelFiles(this.components.dataDir, id)
    } catch (err) {
      return { type: 'error', code: 'unavailable', reason: (err as Error).message }
    }
    const all = [files.modelJson, files.weights]
    return {
      type: 'payload',
      header: encodeHeader(files.modelJson.byteLength, files.weights.byteLength),
      chunks: (function * () {
        for (const part of all) {
          for (let at = 0; at < part.byteLength; at += CHUNK_BYTES) yield part.subarray(at, at + CHUNK_BYTES)
        }
      })()
    }
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
 * Fetches model `id` from `peer` into the data dir's store: into a temp dir beside the store, hashed as it
 * arrives, renamed into place only when it hashes to `id`. Throws InvalidMessageError (a bad frame, a wrong
 * hash: the bytes are discarded), TimeoutError, or an Error saying what the peer answered.
 */
export async function fetchModelFrom (node: ModelNode, peer: PeerId | string, id: string, dataDir: string, signal?: AbortSignal): Promise<{ bytes: number }> {
  const root = modelsRoot(dataDir)
  mkdirSync(root, { recursive: true })
  const tmp = TempFiles.dir(join(root, `.fetch-${process.pid}-${randomBytes(4).toString('hex')}`))
  let hasher: ReturnType<typeof idHasher> | undefined
  let jsonBytes = 0
  let json: FileHandle | undefined
  let weights: FileHandle | null = null
  const bytes = await fetchPayload(node, peer, MODEL_TRANSFER, encodeRequest(id), {
    begin: async head => {
      jsonBytes = head.jsonBytes
      hasher = idHasher(head.jsonBytes)
      json = await tmp.create(join(tmp.path, MODEL_FILE))
      weights = head.weightsBytes > 0 ? await tmp.create(join(tmp.path, WEIGHTS_FILE)) : null
      return head.jsonBytes + head.weightsBytes
    },
    write: async (data, at) => {
      hasher?.update(data)
      // a frame may straddle model.json and the weights
      const toJson = Math.max(0, Math.min(data.byteLength, jsonBytes - at))
      if (toJson > 0 && json !== undefined) await writeAll(json, data, 0, toJson, at)
      if (toJson < data.byteLength && weights !== null) await writeAll(weights, data, toJson, data.byteLength - toJson, at + toJson - jsonBytes)
    },
    finish: async () => {
      const actual = hasher?.id()
      if (actual !== id) throw new InvalidMessageError(`${String(peer)} sent a model that hashes to ${actual}, not ${id}: discarded`)
      await tmp.close()
      const dir = join(root, id)
      if (!existsSync(join(dir, MODEL_FILE))) {
        rmSync(dir, { recursive: true, force: true })
        await tmp.rename(dir)
      }
    },
    discard: async () => { await tmp.discard() }
  }, signal)
  await tmp.discard()
  return { bytes }
}

/**
 * Makes model `id` present in the data dir: from the first of `peers` that
 * sends it with the right hash, checked to parse as a model. Throws
 * ModelUnavailableError, saying what each peer answered, when none can.
 */
export async function fetchModel (node: ModelNode, peers: Array<PeerId | string>, id: string, dataDir: string, signal?: AbortSignal): Promise<{ peer: string, bytes: number, ms: number }> {
  const started = performance.now()
  const { peer, value } = await fetchFromFirst(peers, async peer => {
    const r = await fetchModelFrom(node, peer, id, dataDir, signal)
    try {
      loadModel(dataDir, id)
    } catch (err) {
      // right hash, bad model: the creator stored it so; nobody has a better one
      rmSync(join(modelsRoot(dataDir), id), { recursive: true, force: true })
      throw err
    }
    return r
  }, causes => new ModelUnavailableError(`no peer could send model ${id}${causes.length > 0 ? `: ${causes.map(c => `${c.peer}: ${c.error}`).join('; ')}` : ' (no peers to ask)'}`, causes), signal)
  return { peer, bytes: value.bytes, ms: performance.now() - started }
}
