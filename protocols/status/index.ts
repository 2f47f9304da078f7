/**
 * `/peer/status/1.0.0`: ask a swarm member how it is doing. One stream per
 * request: the asker writes one length-prefixed request frame, the member
 * answers with one length-prefixed response frame and closes. Both are UTF-8
 * JSON, bounded (MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES) and validated; any
 * other input is an InvalidMessageError. `peer status --swarm` and the
 * dashboard gather every live member's summary this way.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const frame = encodeResponse({ ok: true, status: summary })
 * const res = decodeResponse(frame) // { ok: true, status } | { ok: false, error }
 */
import { z } from 'zod'
import { MAX_MEMBERS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_NAME, PROTOCOL_PREFIX, PROTOCOL_VERSION } from './constants.ts'
import { InvalidMessageError } from './errors.ts'

export * from './constants.ts'
export { InvalidMessageError, StatusRequestError, TimeoutError } from './errors.ts'

export const STATUS_PROTOCOL = `${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

const peerId = z.string().min(1).max(128).regex(/^[A-Za-z0-9]+$/)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const nonNegative = z.number().nonnegative().max(Number.MAX_VALUE)
const label = z.string().max(64)

export const requestSchema = z.object({ op: z.literal('status') }).strict()
export type StatusRequest = z.infer<typeof requestSchema>

/** What one member says about itself. */
export const memberStatusSchema = z.object({
  peerId,
  /** The root actor's state (`training`, `reducing`, `done`, …). */
  state: label,
  /** When the summary was taken (ms since the epoch, the member's clock). */
  at: count,
  uptimeSec: count,
  backend: label.nullable(),
  jobId: z.string().max(128).nullable(),
  /** Connected peers. */
  peers: count,
  training: z.object({
    step: count,
    round: count,
    epoch: count,
    epochs: count,
    epochProgress: z.number().min(0).max(1),
    loss: z.number().nullable(),
    accuracy: z.number().min(0).max(1).nullable(),
    testLoss: z.number().nullable(),
    samplesPerSec: nonNegative,
    weightsHash: z.string().regex(/^[0-9a-f]{1,64}$/).nullable()
  }).strict().nullable(),
  shards: z.object({ mine: count, total: count }).strict(),
  ring: z.object({
    state: label,
    completed: count,
    aborted: count,
    /** The last round's members, in ring order: this member sends to the one after it. */
    members: z.array(peerId).max(MAX_MEMBERS),
    /** The last round this member completed: time, bytes it sent to its successor, vector bytes per second. */
    last: z.object({ round: count, ms: nonNegative, bytesSent: count, algbw: nonNegative, members: count }).strict().nullable()
  }).strict()
}).strict()
export type MemberStatus = z.infer<typeof memberStatusSchema>

export const responseSchema = z.union([
  z.object({ ok: z.literal(true), status: memberStatusSchema }).strict(),
  z.object({ ok: z.literal(false), error: z.string().max(512) }).strict()
])
export type StatusResponse = z.infer<typeof responseSchema>

function encodeJson (value: unknown, max: number, what: string): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(value))
  if (bytes.byteLength > max) throw new InvalidMessageError(`${what} of ${bytes.byteLength} bytes exceeds ${max}`)
  return bytes
}

function decodeJson<T> (bytes: Uint8Array, max: number, schema: z.ZodType<T>, what: string): T {
  if (!(bytes instanceof Uint8Array)) throw new InvalidMessageError(`${what} is not bytes`)
  if (bytes.byteLength > max) throw new InvalidMessageError(`${what} of ${bytes.byteLength} bytes exceeds ${max}`)
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new InvalidMessageError(`${what} is not UTF-8 JSON`)
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new InvalidMessageError(`invalid ${what}: ${issue.path.join('.')}: ${issue.message}`)
  }
  return parsed.data
}

export function encodeRequest (req: StatusRequest): Uint8Array {
  return encodeJson(requestSchema.parse(req), MAX_REQUEST_BYTES, 'status request')
}

export function decodeRequest (bytes: Uint8Array): StatusRequest {
  return decodeJson(bytes, MAX_REQUEST_BYTES, requestSchema, 'status request')
}

/** Encodes a response; a summary that does not match the schema or the size limit throws InvalidMessageError. */
export function encodeResponse (res: StatusResponse): Uint8Array {
  const checked = responseSchema.safeParse(res)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    throw new InvalidMessageError(`invalid status response: ${issue.path.join('.')}: ${issue.message}`)
  }
  return encodeJson(checked.data, MAX_RESPONSE_BYTES, 'status response')
}

export function decodeResponse (bytes: Uint8Array): StatusResponse {
  return decodeJson(bytes, MAX_RESPONSE_BYTES, responseSchema, 'status response')
}
