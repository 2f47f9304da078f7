/** Request/response over `/peer/manifest-sync/1.0.0`: each side sends its whole manifest once, as one frame. */
import type { Stream } from '@libp2p/interface'
import { readFrame as readNextFrame, writeFrames } from '../../protocols/common/framing.ts'
import { MAX_SYNC_BYTES } from '../../protocols/manifest/index.ts'

/** Reads one length-prefixed frame of at most `max` bytes; null if the stream ends first. */
export async function readFrame (stream: Pick<Stream, 'source'>, max: number = MAX_SYNC_BYTES): Promise<Uint8Array | null> {
  return await readNextFrame(stream.source, max)
}

/** Writes one length-prefixed frame and closes the writing side. */
export async function writeFrame (stream: Pick<Stream, 'sink'>, bytes: Uint8Array): Promise<void> {
  await writeFrames(stream, bytes)
}
