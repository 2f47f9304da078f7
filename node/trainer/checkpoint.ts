/**
 * Checkpoints: weights, optimizer state and data position, in one LevelDB
 * value so that a checkpoint is written whole or not at all.
 *
 * Layout of the value: a 4-byte little-endian header length, the header as
 * UTF-8 JSON (padded with spaces to a multiple of 4), then every tensor's
 * float32 values back to back. The header carries a sha256 of the data so a
 * damaged value is reported, not loaded.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { Evaluation, Progress } from './progress.ts'
import { CorruptCheckpointError } from './errors.ts'

export interface NamedValues {
  name: string
  shape: number[]
  values: Float32Array
}

export interface Checkpoint {
  jobId: string
  progress: Progress
  loss: number | null
  evaluation: Evaluation | null
  weights: NamedValues[]
  optimizer: NamedValues[]
  createdAt: number
}

/** The part of a checkpoint that describes it, readable without the tensors. */
export interface CheckpointInfo {
  jobId: string
  progress: Progress
  createdAt: number
}

interface Header {
  version: 1
  jobId: string
  progress: Progress
  loss: number | null
  evaluation: Evaluation | null
  createdAt: number
  tensors: Array<{ group: 'weights' | 'optimizer', name: string, shape: number[], length: number }>
  sha256: string
}

const count = z.number().int().nonnegative()
const headerSchema = z.object({
  version: z.literal(1),
  jobId: z.string().max(64),
  progress: z.object({
    step: count, round: count.optional(), samples: count.optional(), pass: count.optional(), cursor: count.optional(),
    sinceSyncSteps: count.optional(), sinceSyncSamples: count.optional(),
    group: z.object({ epoch: count, members: z.array(z.string().min(1).max(128)).max(1024) }).strict().optional()
  }).passthrough(),
  loss: z.number().nullable(),
  evaluation: z.object({ epoch: count, step: count, loss: z.number(), accuracy: z.number() }).nullable(),
  createdAt: count,
  tensors: z.array(z.object({
    group: z.enum(['weights', 'optimizer']),
    name: z.string().max(256),
    shape: z.array(count).max(8),
    length: count
  }).strict()).max(100_000),
  sha256: z.string().regex(/^[0-9a-f]{64}$/)
}).strict()

/** Largest header accepted when decoding (it lists tensor names and shapes only). */
const MAX_HEADER_BYTES = 1024 * 1024

/**
 * One buffer, the tensors copied into it once: with a model of hundreds of MB, every extra full copy is that much
 * more peak memory (the hash is taken tensor by tensor, so the data need not be gathered first).
 */
export function encodeCheckpoint (ckpt: Checkpoint): Uint8Array {
  // a tensor's values are stored as float32: an int32 tensor's (dataSync of an optimizer's iteration count) converted
  const asFloats = (t: NamedValues): NamedValues => t.values instanceof Float32Array ? t : { ...t, values: Float32Array.from(t.values) }
  const all = [
    ...ckpt.weights.map(t => ({ group: 'weights' as const, t: asFloats(t) })),
    ...ckpt.optimizer.map(t => ({ group: 'optimizer' as const, t: asFloats(t) }))
  ]
  const hash = createHash('sha256')
  for (const { t } of all) hash.update(bytesOf(t.values))
  const header: Header = {
    version: 1,
    jobId: ckpt.jobId,
    progress: ckpt.progress,
    loss: ckpt.loss,
    evaluation: ckpt.evaluation,
    createdAt: ckpt.createdAt,
    tensors: all.map(({ group, t }) => ({ group, name: t.name, shape: t.shape, length: t.values.length })),
    sha256: hash.digest('hex')
  }
  let json = JSON.stringify(header)
  while ((Buffer.byteLength(json) % 4) !== 0) json += ' '
  const headerBytes = Buffer.from(json)
  const dataBytes = all.reduce((sum, { t }) => sum + t.values.byteLength, 0)
  const out = new Uint8Array(4 + headerBytes.length + dataBytes)
  new DataView(out.buffer).setUint32(0, headerBytes.length, true)
  out.set(headerBytes, 4)
  let offset = 4 + headerBytes.length
  for (const { t } of all) {
    out.set(bytesOf(t.values), offset)
    offset += t.values.byteLength
  }
  return out
}

function bytesOf (values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
}

/**
 * The tensors of the result view `bytes` (no copy; a copy only where the data is not 4-byte aligned): the caller
 * hands over the buffer, and must not change it while the checkpoint is in use.
 */
export function decodeCheckpoint (bytes: Uint8Array): Checkpoint {
  if (bytes.length < 4) throw new CorruptCheckpointError('checkpoint is truncated')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headerLength = view.getUint32(0, true)
  if (headerLength > MAX_HEADER_BYTES || 4 + headerLength > bytes.length || headerLength % 4 !== 0) {
    throw new CorruptCheckpointError('checkpoint header is damaged')
  }
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(bytes.subarray(4, 4 + headerLength)).toString('utf8'))
  } catch {
    throw new CorruptCheckpointError('checkpoint header is not JSON')
  }
  // a checkpoint may come from another peer (state sync): check every field before using it
  const parsed = headerSchema.safeParse(raw)
  if (!parsed.success) throw new CorruptCheckpointError(`checkpoint header is invalid: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`)
  const header = parsed.data as Header
  for (const t of header.tensors) {
    if (t.shape.reduce((a, b) => a * b, 1) !== t.length) throw new CorruptCheckpointError(`checkpoint tensor ${t.name} has ${t.length} values for shape ${t.shape.join('x')}`)
  }
  const dataBytes = (bytes.byteOffset + 4 + headerLength) % 4 === 0 ? bytes.subarray(4 + headerLength) : bytes.slice(4 + headerLength)
  const total = header.tensors.reduce((s, t) => s + t.length, 0)
  if (dataBytes.length !== total * 4) throw new CorruptCheckpointError(`checkpoint holds ${dataBytes.length} data bytes, its header says ${total * 4}`)
  if (createHash('sha256').update(dataBytes).digest('hex') !== header.sha256) throw new CorruptCheckpointError('checkpoint data does not match its hash')
  const data = new Float32Array(dataBytes.buffer, dataBytes.byteOffset, total)
  const ckpt: Checkpoint = {
    jobId: header.jobId,
    progress: header.progress,
    loss: header.loss,
    evaluation: header.evaluation,
    createdAt: header.createdAt,
    weights: [],
    optimizer: []
  }
  let offset = 0
  for (const t of header.tensors) {
    ckpt[t.group].push({ name: t.name, shape: t.shape, values: data.subarray(offset, offset + t.length) })
    offset += t.length
  }
  return ckpt
}

/** The minimal storage a checkpoint store needs: a LevelDB sublevel with binary values. */
export interface BinaryStore {
  get (key: string): Promise<Uint8Array | undefined>
  put (key: string, value: Uint8Array): Promise<void>
}

const LATEST = 'latest'

export class CheckpointStore {
  private readonly store: BinaryStore
  constructor (store: BinaryStore) {
    this.store = store
  }

  async save (ckpt: Checkpoint): Promise<void> {
    await this.store.put(LATEST, encodeCheckpoint(ckpt))
  }

  /** The newest checkpoint, or null if there is none; throws CorruptCheckpointError if it is damaged. */
  async load (): Promise<Checkpoint | null> {
    const bytes = await this.store.get(LATEST)
    if (bytes === undefined) return null
    return decodeCheckpoint(bytes)
  }
}
