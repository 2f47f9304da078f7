/**
 * What `peer status --json` prints. The fields of ARCHITECTURE.md's status
 * contract are never renamed; fields for later parts (network, ring) are
 * empty until those parts run.
 */
import type { Job } from '../../protocols/job/index.ts'
import type { BackendName } from '../trainer/index.ts'
import type { Peer } from './index.ts'

export interface PeerStatus {
  peerId: string | null
  addresses: string[]
  state: string
  error: string | null
  pid: number
  dataDir: string
  uptimeSec: number
  peers: Array<{ peerId: string, addresses: string[] }>
  job: (Job & { id: string }) | null
  shards: { total: number, mine: string[] }
  ring: { round: number, members: string[], state: string }
  training: {
    step: number
    epoch: number
    epochs: number
    /** Fraction of the current epoch done, 0..1. */
    epochProgress: number
    stepsPerEpoch: number
    loss: number | null
    accuracy: number | null
    testLoss: number | null
    samplesPerSec: number
    weightsHash: string | null
  } | null
  backend: BackendName | null
}

export function buildStatus (peer: Peer): PeerStatus {
  const trainer = peer.trainer
  const evaluation = trainer?.lastEvaluation ?? null
  return {
    peerId: null,
    addresses: [],
    state: peer.state,
    error: peer.error,
    pid: process.pid,
    dataDir: peer.options.dataDir,
    uptimeSec: Math.round((Date.now() - peer.startedAt) / 1000),
    peers: [],
    job: peer.job !== null && peer.jobId !== null ? { id: peer.jobId, ...peer.job } : null,
    shards: { total: 0, mine: [] },
    ring: { round: 0, members: [], state: 'idle' },
    training: trainer === null
      ? null
      : {
          step: trainer.progress.step,
          epoch: trainer.progress.epoch,
          epochs: trainer.job.epochs,
          epochProgress: trainer.epochProgress,
          stepsPerEpoch: trainer.stepsPerEpoch,
          loss: trainer.loss,
          accuracy: evaluation?.accuracy ?? null,
          testLoss: evaluation?.loss ?? null,
          samplesPerSec: Math.round(trainer.samplesPerSec),
          weightsHash: trainer.weightsHash()
        },
    backend: peer.backend
  }
}
