/** Request/response over `/peer/manifest-sync/1.0.0`: each side sends its whole manifest once, as one frame. */
import type { Stream } from '@libp2p/interface'
import { ProtocolHandler, readFrame as readNextFrame } from '../../protocols/common/index.ts'
import type { Registrar } from '../../protocols/common/index.ts'
import { MAX_SYNC_BYTES, MAX_SYNC_STREAMS, SYNC_PROTOCOL } from '../../protocols/manifest/index.ts'

/** Reads one length-prefixed frame of at most `max` bytes; null if the stream ends first. */
export async function readFrame (stream: Pick<Stream, 'source'>, max: number = MAX_SYNC_BYTES): Promise<Uint8Array | null> {
  return await readNextFrame(stream.source, max)
}

/** The `/peer/manifest-sync/1.0.0` handler on `registrar`: `answer` gets each incoming sync stream and the peer it comes from. */
export function syncHandler (registrar: Registrar, answer: (stream: Stream, peer: string) => void): ProtocolHandler {
  return new ProtocolHandler(registrar, { protocol: SYNC_PROTOCOL, maxInboundStreams: MAX_SYNC_STREAMS, maxOutboundStreams: MAX_SYNC_STREAMS }, ({ stream, connection }) => {
    answer(stream, connection.remotePeer.toString())
  })
}
