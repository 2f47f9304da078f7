/**
 * `/peer/model/1.0.0`: fetch a user's model (`mdl-…`, the job's `model`) from
 * a peer that holds it. No I/O here: node/models serves and fetches; this
 * folder says what bytes are valid.
 *
 * One request per stream. The asker sends one request frame (type, the 8
 * bytes of the id) and closes its side; the holder answers with an error
 * frame, or with a header frame (the sizes of model.json and of the weights)
 * followed by data frames of at most CHUNK_BYTES carrying model.json, then
 * the weights, then closes. The asker hashes what it receives and keeps it
 * only if it hashes to the id it asked for; the holder is trusted for nothing.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * await writeFrames(stream, encodeRequest('mdl-0123456789abcdef'))
 * for await (const frame of decodeFrames(stream.source, MAX_FRAME_BYTES)) {
 *   const r = decodeResponse(frame) // throws InvalidMessageError on anything malformed
 * }
 */
export * from './constants.ts'
export { ERROR_CODES, decodeRequest, decodeResponse, encodeData, encodeError, encodeHeader, encodeRequest } from './codec.ts'
export type { ErrorCode, ModelHeader, ModelResponse } from './codec.ts'
export { InvalidMessageError, ModelUnavailableError, NotStartedError, TimeoutError } from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'
