/**
 * Round membership on the wire: every member announces `ready` for round r
 * (with its sample count and weight hash); a proposer publishes the ordered
 * member list of (r, attempt). Gossip topic `/peer/rounds/1.0.0/<jobId>`,
 * JSON, bounded, validated.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * encodeRoundMessage({ t: 'ready', round: 7, attempt: 0, samples: 64, weightsHash: 'ab…', step: 7 })
 */
import { z } from 'zod'
import { MAX_MEMBERS, MAX_MESSAGE_BYTES, PROTOCOL_PREFIX, PROTOCOL_VERSION, TOPIC_NAME } from './constants.ts'
import { InvalidMessageError } from './errors.ts'

export * from './constants.ts'
export { InvalidMessageError } from './errors.ts'

export function roundsTopic (jobId: string): string {
  return `${PROTOCOL_PREFIX}/${TOPIC_NAME}/${PROTOCOL_VERSION}/${jobId}`
}

const peerId = z.string().min(1).max(128).regex(/^[A-Za-z0-9]+$/)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

export const readySchema = z.object({
  t: z.literal('ready'),
  round: count,
  attempt: z.number().int().nonnegative().max(1_000_000),
  /** Samples the member's update was computed over (its weight in the average). */
  samples: count,
  weightsHash: z.string().max(64),
  step: count,
  /** The epoch of the last group the member agreed on (0: none yet); a proposal's epoch is one above the highest announced. */
  epoch: count.optional()
}).strict()

export const proposeSchema = z.object({
  t: z.literal('propose'),
  round: count,
  attempt: z.number().int().nonnegative().max(1_000_000),
  /** The members of the round, in ring order. */
  members: z.array(peerId).min(1).max(MAX_MEMBERS),
  /** The weight hash the majority of members announced; members whose hash differs were left out. */
  weightsHash: z.string().max(64),
  /** The group epoch this proposal starts: rounds after it reuse the member list without a new agreement (docs/rounds.md). */
  epoch: count.optional()
}).strict().refine(m => new Set(m.members).size === m.members.length, { message: 'members are not unique' })

export const roundMessageSchema = z.union([readySchema, proposeSchema])

export type ReadyMessage = z.infer<typeof readySchema>
export type ProposeMessage = z.infer<typeof proposeSchema>
export type RoundMessage = ReadyMessage | ProposeMessage

export function encodeRoundMessage (msg: RoundMessage): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(msg))
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new InvalidMessageError(`round message of ${bytes.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`)
  return bytes
}

export function decodeRoundMessage (bytes: Uint8Array): RoundMessage {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new InvalidMessageError(`round message of ${bytes.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`)
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new InvalidMessageError('round message is not UTF-8 JSON')
  }
  const parsed = roundMessageSchema.safeParse(value)
  if (!parsed.success) throw new InvalidMessageError(`invalid round message: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`)
  return parsed.data
}
