/**
 * What the wire protocols share (see docs/architecture.md): the error classes every one of them throws
 * (`InvalidMessageError` for any input that is not a valid message, `TimeoutError`, `NotStartedError`; `UnavailableError`,
 * the base of the transfer protocols' "no peer could send it"), the bounded length-prefixed framing
 * (`framing.ts`), `ProtocolService`, the base of a service that answers one protocol (its start/stop/isStarted),
 * with the `ProtocolHandler` it holds (`service.ts`), and the frames the transfer protocols (shard, model)
 * share: data, error and the answer's decoder (`transfer.ts`). Protocols re-export the errors from their own
 * `errors.ts`, so importers keep importing from the protocol they use.
 *
 * @example
 * import { InvalidMessageError, ProtocolService, readFrame, writeFrames } from '../common/index.ts'
 * class EchoService extends ProtocolService {            // start() registers, stop() removes, isStarted
 *   constructor (node: Registrar) { super(node, { protocol, maxInboundStreams: 4, maxOutboundStreams: 4 }) }
 *   protected onStream ({ stream }: IncomingStreamData): void { void serve(stream) }
 * }
 * const frame = await readFrame(stream.source, MAX_REQUEST_BYTES) // InvalidMessageError ('too-large') before buffering an oversized frame
 * await writeFrames(stream, answer)
 */
export { InvalidMessageError, NotStartedError, TimeoutError, UnavailableError } from './errors.ts'
export type { InvalidMessageKind } from './errors.ts'
export { FrameDecoder, decodeFrames, encodeLengthPrefix, framed, prefixed, readFrame, writeFrames } from './framing.ts'
export type { ByteSource, Framed } from './framing.ts'
export { ProtocolHandler, ProtocolService } from './service.ts'
export type { ProtocolHandlerInit, Registrar } from './service.ts'
export {
  CHUNK_BYTES, ERROR_HEADER_BYTES, FRAME_DATA, FRAME_ERROR, FRAME_HEADER, FRAME_REQUEST, MAX_ANSWER_FRAME_BYTES, MAX_REASON_BYTES,
  TRANSFER_ERROR_CODES, decodeTransferResponse, encodeData, encodeError
} from './transfer.ts'
export type { HeaderLayout, TransferErrorCode, TransferResponse } from './transfer.ts'
