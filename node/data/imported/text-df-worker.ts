/** The document-frequency worker (text-df.ts): counts the batches it is sent, answers with the counts when told to finish. */
import { parentPort, workerData } from 'node:worker_threads'
import { DfCounter } from './text-df.ts'
import type { DfAnswer, DfMessage } from './text-df.ts'

const port = parentPort
if (port === null) throw new Error('text-df-worker.ts runs as a worker thread')
const { buckets, slots } = workerData as { buckets: number, slots: number }
const counter = new DfCounter(buckets, slots)

port.on('message', (m: DfMessage) => {
  try {
    if (m.kind === 'batch') counter.add(m.batch)
    else port.postMessage({ kind: 'counts', counts: counter.slots } satisfies DfAnswer)
  } catch (err) {
    port.postMessage({ kind: 'error', message: (err as Error).message } satisfies DfAnswer)
  }
})
