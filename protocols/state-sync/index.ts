/**
 * `/peer/state-sync/1.0.0`: a peer that joins (or falls behind) fetches the
 * swarm's current training state (weights, optimizer state, round, step) as
 * an encoded checkpoint, in parts, from several donors in parallel, and
 * checks it against the hash the donors announce.
 *
 * Frames are length-prefixed, at most MAX_FRAME_BYTES; the first byte says
 * what follows: 1 = JSON (request, metadata or error), 2 = a part's bytes.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * encodeRequest({ op: 'meta' })
 * encodeRequest({ op: 'part', snapshot: 'ab12…', index: 3 })
 */
import { z } from 'zod'
import { MAX_FRAME_BYTES, MAX_JSON_BYTES, MAX_STATE_BYTES, PART_BYTES, PROTOCOL_NAME, PROTOCOL_PREFIX, PROTOCOL_VERSION } from './constants.ts'
import { InvalidMessageError } from './errors.ts'

export * from './constants.ts'
export { InvalidMessageError, StateSyncError } from './errors.ts'

export const STATE_SYNC_PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

const TYPE_JSON = 1
const TYPE_PART = 2

const hex64 = z.string().regex(/^[0-9a-f]{64}$/)

export const requestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('meta') }).strict(),
  z.object({ op: z.literal('part'), snapshot: hex64, index: z.number().int().nonnegative().max(MAX_STATE_BYTES / PART_BYTES) }).strict()
])
export type StateRequest = z.infer<typeof requestSchema>

export const metaSchema = z.object({
  ok: z.literal(true),
  /** sha256 of the whole encoded state: it names the snapshot and checks it. */
  snapshot: hex64,
  round: z.number().int().nonnegative(),
  step: z.number().int().nonnegative(),
  weightsHash: z.string().max(64),
  bytes: z.number().int().nonnegative().max(MAX_STATE_BYTES),
  partBytes: z.literal(PART_BYTES)
}).strict()
export type StateMeta = z.infer<typeof metaSchema>

export const errorSchema = z.object({ ok: z.literal(false), error: z.string().max(512) }).strict()

export type StateResponse = { kind: 'meta', meta: StateMeta } | { kind: 'error', error: string } | { kind: 'part', bytes: Uint8Array }

function jsonFrame (value: unknown): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(value))
  if (body.byteLength > MAX_JSON_BYTES) throw new InvalidMessageError(`JSON frame of ${body.byteLength} bytes exceeds ${MAX_JSON_BYTES}`)
  const out = new Uint8Array(1 + body.byteLength)
  out[0] = TYPE_JSON
  out.set(body, 1)
  return out
}

function parseJsonFrame (frame: Uint8Array): unknown {
  if (frame.byteLength > 1 + MAX_JSON_BYTES) throw new InvalidMessageError('JSON frame too large')
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(1)))
  } catch {
    throw new InvalidMessageError('JSON frame is not UTF-8 JSON')
  }
}

export function encodeRequest (req: StateRequest): Uint8Array {
  return jsonFrame(req)
}

export function decodeRequest (frame: Uint8Array): StateRequest {
  if (frame.byteLength < 1 || frame[0] !== TYPE_JSON) throw new InvalidMessageError('a request is a JSON frame')
  const parsed = requestSchema.safeParse(parseJsonFrame(frame))
  if (!parsed.success) throw new InvalidMessageError(`invalid request: ${parsed.error.issues[0].message}`)
  return parsed.data
}

export function encodeMeta (meta: StateMeta): Uint8Array {
  return jsonFrame(meta)
}

export function encodeError (error: string): Uint8Array {
  return jsonFrame({ ok: false, error: error.slice(0, 512) })
}

export function encodePart (bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength > PART_BYTES) throw new InvalidMessageError('part too large')
  const out = new Uint8Array(1 + bytes.byteLength)
  out[0] = TYPE_PART
  out.set(bytes, 1)
  return out
}

export function decodeResponse (frame: Uint8Array): StateResponse {
  if (frame.byteLength < 1 || frame.byteLength > MAX_FRAME_BYTES) throw new InvalidMessageError('response frame size out of bounds')
  if (frame[0] === TYPE_PART) return { kind: 'part', bytes: frame.subarray(1) }
  if (frame[0] !== TYPE_JSON) throw new InvalidMessageError(`unknown frame type ${frame[0]}`)
  const value = parseJsonFrame(frame)
  const meta = metaSchema.safeParse(value)
  if (meta.success) return { kind: 'meta', meta: meta.data }
  const error = errorSchema.safeParse(value)
  if (error.success) return { kind: 'error', error: error.data.error }
  throw new InvalidMessageError('response is neither metadata nor an error')
}

/** Number of parts of a state of `bytes` bytes. */
export function partCount (bytes: number): number {
  return Math.ceil(bytes / PART_BYTES)
}
