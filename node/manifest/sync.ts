/** Request/response over `/peer/manifest-sync/1.0.0`: each side sends its whole manifest once. */
import * as lp from 'it-length-prefixed'
import type { Stream } from '@libp2p/interface'
import { MAX_SYNC_BYTES } from '../../protocols/manifest/index.ts'

/** Reads one length-prefixed frame of at most `max` bytes; null if the stream ends first. */
export async function readFrame (stream: Stream, max: number = MAX_SYNC_BYTES): Promise<Uint8Array | null> {
  for await (const chunk of lp.decode(stream.source, { maxDataLength: max })) {
    return chunk.subarray()
  }
  return null
}

/** Writes one length-prefixed frame and closes the writing side. */
export async function writeFrame (stream: Stream, bytes: Uint8Array): Promise<void> {
  await stream.sink([lp.encode.single(bytes).subarray()])
}
