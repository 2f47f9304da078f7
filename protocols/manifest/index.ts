/**
 * The manifest on the wire: deltas on a gossipsub topic per job, and the full
 * state exchanged over `/peer/manifest-sync/1.0.0` when peers connect. JSON,
 * size-bounded, every entry validated against the schema of its key.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const bytes = encodeDelta({ entries })
 * const { entries } = decodeDelta(bytes) // throws InvalidMessageError on anything else
 */
import { z } from 'zod'
import { jobSchema } from '../job/index.ts'
import {
  MANIFEST_TOPIC_NAME, MAX_DELTA_BYTES, MAX_HELD_SHARDS, MAX_DELTA_ENTRIES, MAX_KEY_LENGTH, MAX_SYNC_BYTES, MAX_SYNC_ENTRIES,
  PROTOCOL_PREFIX, PROTOCOL_VERSION, SYNC_PROTOCOL_NAME
} from './constants.ts'
import { InvalidMessageError } from './errors.ts'

export * from './constants.ts'
export { InvalidMessageError } from './errors.ts'

export const SYNC_PROTOCOL = `${PROTOCOL_PREFIX}/${SYNC_PROTOCOL_NAME}/${PROTOCOL_VERSION}`

export function manifestTopic (jobId: string): string {
  return `${PROTOCOL_PREFIX}/${MANIFEST_TOPIC_NAME}/${PROTOCOL_VERSION}/${jobId}`
}

const peerIdString = z.string().min(1).max(128)

export const clockSchema = z.object({
  wall: z.number().int().nonnegative(),
  counter: z.number().int().nonnegative().max(2 ** 31),
  peer: peerIdString
}).strict()

export const shardSchema = z.object({
  index: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  hash: z.string().max(128)
}).strict()

export const claimSchema = z.object({
  owner: peerIdString.nullable()
}).strict()

export const memberSchema = z.object({
  state: z.enum(['alive', 'left', 'dead']),
  addresses: z.array(z.string().max(512)).max(32),
  /** The member's own clock reading when it wrote this (informational: liveness uses local receive times). */
  heartbeat: z.number().int().nonnegative(),
  /** Step of the member's model, so newcomers and status can see who is behind. */
  step: z.number().int().nonnegative().optional(),
  /** Rounds the member has completed with the swarm. */
  round: z.number().int().nonnegative().optional(),
  /** The group its model was last trained in: epoch, size and lowest peer id (docs/rounds.md, "Partitions"). */
  group: z.object({
    epoch: z.number().int().nonnegative(),
    size: z.number().int().nonnegative().max(1024),
    lead: z.string().max(128)
  }).strict().optional()
}).strict()

/**
 * Which training shards of the job's imported data set a peer holds on disk, written only by that peer
 * (`holders/<peerId>`, one key per peer: no two peers ever write the same key, so the last-writer-wins
 * merge never loses a holder). Only live members' records count as replicas (node/shard-transfer/placement.ts).
 */
export const holdingSchema = z.object({
  dataset: z.string().regex(/^ds-[0-9a-f]{16}$/),
  shards: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)).max(MAX_HELD_SHARDS)
}).strict()

export type ShardInfo = z.infer<typeof shardSchema>
export type HoldingValue = z.infer<typeof holdingSchema>
export type ClaimValue = z.infer<typeof claimSchema>
export type MemberValue = z.infer<typeof memberSchema>
export type WireClock = z.infer<typeof clockSchema>

/** Which schema a key's value must follow. */
function valueSchema (key: string): z.ZodType | null {
  if (key === 'job') return jobSchema
  if (/^shards\/[A-Za-z0-9_-]{1,64}$/.test(key)) return shardSchema
  if (/^claims\/[A-Za-z0-9_-]{1,64}$/.test(key)) return claimSchema
  if (/^members\/[A-Za-z0-9]{1,128}$/.test(key)) return memberSchema
  if (/^holders\/[A-Za-z0-9]{1,128}$/.test(key)) return holdingSchema
  return null
}

export interface WireEntry {
  key: string
  value: unknown
  clock: WireClock
}

const entryShape = z.object({
  key: z.string().min(1).max(MAX_KEY_LENGTH),
  value: z.unknown(),
  clock: clockSchema
}).strict()

function validateEntry (raw: unknown, i: number): WireEntry {
  const parsed = entryShape.safeParse(raw)
  if (!parsed.success) throw new InvalidMessageError(`entry ${i}: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`)
  const { key, value, clock } = parsed.data
  const schema = valueSchema(key)
  if (schema === null) throw new InvalidMessageError(`entry ${i}: unknown key ${JSON.stringify(key.slice(0, 64))}`)
  // only a peer itself says what it holds (a relayed sync keeps the writer's clock)
  if (schema === holdingSchema && clock.peer !== key.slice('holders/'.length)) throw new InvalidMessageError(`entry ${i} (${key.slice(0, 64)}): written by another peer`)
  if (value === null || value === undefined) return { key, value: null, clock }
  const v = schema.safeParse(value)
  if (!v.success) throw new InvalidMessageError(`entry ${i} (${key}): ${v.error.issues[0].path.join('.')}: ${v.error.issues[0].message}`)
  return { key, value: v.data, clock }
}

function decodeJson (bytes: Uint8Array, maxBytes: number): unknown {
  if (bytes.byteLength > maxBytes) throw new InvalidMessageError(`message of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new InvalidMessageError('message is not UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch {
    throw new InvalidMessageError('message is not JSON')
  }
}

function decodeEntries (value: unknown, maxEntries: number): WireEntry[] {
  if (!Array.isArray(value)) throw new InvalidMessageError('entries is not an array')
  if (value.length > maxEntries) throw new InvalidMessageError(`${value.length} entries exceed the limit of ${maxEntries}`)
  return value.map(validateEntry)
}

export interface Delta {
  entries: WireEntry[]
}

export function encodeDelta (delta: Delta): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify({ v: 1, entries: delta.entries }))
  if (bytes.byteLength > MAX_DELTA_BYTES) throw new InvalidMessageError(`delta of ${bytes.byteLength} bytes exceeds the limit of ${MAX_DELTA_BYTES}`)
  return bytes
}

export function decodeDelta (bytes: Uint8Array): Delta {
  const msg = decodeJson(bytes, MAX_DELTA_BYTES)
  if (msg === null || typeof msg !== 'object' || (msg as { v?: unknown }).v !== 1) throw new InvalidMessageError('not a version 1 delta')
  return { entries: decodeEntries((msg as { entries?: unknown }).entries, MAX_DELTA_ENTRIES) }
}

/** One side of a sync: the sender's job (null if it has none yet) and its whole manifest. */
export interface SyncMessage {
  jobId: string | null
  entries: WireEntry[]
}

export function encodeSync (msg: SyncMessage): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify({ v: 1, jobId: msg.jobId, entries: msg.entries }))
  if (bytes.byteLength > MAX_SYNC_BYTES) throw new InvalidMessageError(`sync message of ${bytes.byteLength} bytes exceeds the limit of ${MAX_SYNC_BYTES}`)
  return bytes
}

export function decodeSync (bytes: Uint8Array): SyncMessage {
  const msg = decodeJson(bytes, MAX_SYNC_BYTES) as { v?: unknown, jobId?: unknown, entries?: unknown } | null
  if (msg === null || typeof msg !== 'object' || msg.v !== 1) throw new InvalidMessageError('not a version 1 sync message')
  if (msg.jobId !== null && (typeof msg.jobId !== 'string' || !/^[0-9a-f]{16}$/.test(msg.jobId))) throw new InvalidMessageError('jobId is not a job id')
  return { jobId: msg.jobId, entries: decodeEntries(msg.entries, MAX_SYNC_ENTRIES) }
}
