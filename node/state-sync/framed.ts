/** Several length-prefixed request/response frames over one libp2p stream, with bounded frame sizes. */
import * as lp from 'it-length-prefixed'
import { pushable } from 'it-pushable'
import type { Stream } from '@libp2p/interface'

export interface Framed {
  send: (frame: Uint8Array) => void
  /** The next frame, or null when the stream ended; rejects on an oversized or broken frame. */
  next: () => Promise<Uint8Array | null>
  close: () => Promise<void>
  abort: (err: Error) => void
}

export function framed (stream: Stream, maxFrameBytes: number): Framed {
  const out = pushable<Uint8Array>()
  const sinkDone = stream.sink((async function * () {
    for await (const frame of out) yield lp.encode.single(frame).subarray()
  })()).catch(() => {})
  const frames = lp.decode(stream.source, { maxDataLength: maxFrameBytes })[Symbol.asyncIterator]()
  return {
    send: frame => { out.push(frame) },
    next: async () => {
      const r = await frames.next()
      return r.done === true ? null : r.value.subarray()
    },
    close: async () => {
      out.end()
      await sinkDone
      await stream.close().catch(() => {})
    },
    abort: err => {
      out.end(err)
      stream.abort(err)
    }
  }
}
