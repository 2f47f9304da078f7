/**
 * The decode worker (decoder.ts's WorkerDecoder): decodes the blocks it is
 * asked for with an InlineDecoder of its own and sends their features back,
 * transferring the buffers.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { DatasetDescription } from '../imported/description.ts'
import { InlineDecoder } from './decoder.ts'
import type { DecodeAnswer, DecodeRequest } from './decoder.ts'

const port = parentPort
if (port === null) throw new Error('decode-worker.ts runs as a worker thread')
const decoder = new InlineDecoder((workerData as { description: DatasetDescription }).description)

port.on('message', (m: DecodeRequest) => {
  decoder.decode(m.path, m.shard, m.start, m.end).then(e => {
    port.postMessage({ id: m.id, x: e.x, y: e.y, n: e.n, features: e.features } satisfies DecodeAnswer, [e.x.buffer as ArrayBuffer, e.y.buffer as ArrayBuffer])
  }, (err: Error) => {
    port.postMessage({ id: m.id, error: { name: err.name, message: err.message } } satisfies DecodeAnswer)
  })
})
