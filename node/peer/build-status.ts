/**
 * Builds a peer's status (node/peer/status.ts) from the services that hold
 * each part of it. Nothing here is computed on the training path: status is
 * read when asked for.
 */
import type { Job } from '../../protocols/job/index.ts'
import type { Manifest } from '../manifest/index.ts'
import type { Network, ReconnectService } from '../network/index.ts'
import type { Ring } from '../ring/index.ts'
import type { Rounds } from '../rounds/index.ts'
import type { ReplicationService } from '../shard-transfer/index.ts'
import type { CatchUp } from '../state-sync/catch-up.ts'
import type { BackendName, Trainer } from '../trainer/index.ts'
import type { PeerStatus } from './status.ts'

/** What a status is read from: the peer's own state, and each service once it exists. */
export interface StatusSources {
  state: string
  error: string | null
  dataDir: string
  startedAt: number
  backend: BackendName | null
  network: Network | null
  reconnect: ReconnectService | null
  manifest: Manifest | null
  job: Job | null
  jobId: string | null
  rounds: Rounds | null
  ring: Ring | null
  catchUp: CatchUp | null
  trainer: Trainer | null
  /** An imported data set's shard placement (null for a built-in data set). */
  replication: ReplicationService | null
  /** The newest checkpoint (if any) is in the trainer: before that its step would read as lost progress. */
  restored: boolean
}

function members (manifest: Manifest | null): PeerStatus['members'] {
  if (manifest === null) return []
  const live = new Set(manifest.live())
  const counts = new Map<string, number>()
  for (const owner of manifest.owners().values()) if (owner !== null) counts.set(owner, (counts.get(owner) ?? 0) + 1)
  return [...manifest.members()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([peerId, m]) => ({
    peerId,
    state: m.state,
    live: live.has(peerId),
    step: m.step ?? null,
    shards: counts.get(peerId) ?? 0
  }))
}

export function buildStatus (peer: StatusSources): PeerStatus {
  const trainer = peer.trainer
  const manifest = peer.manifest
  const evaluation = trainer?.lastEvaluation ?? null
  return {
    peerId: peer.network?.peerId ?? null,
    addresses: peer.network?.addresses() ?? [],
    state: peer.state,
    error: peer.error,
    pid: process.pid,
    dataDir: peer.dataDir,
    uptimeSec: Math.round((Date.now() - peer.startedAt) / 1000),
    peers: peer.network?.connectedPeers() ?? [],
    security: peer.network === null ? null : { ...peer.network.security },
    network: peer.network === null ? null : { reconnect: peer.reconnect?.status ?? null },
    members: members(manifest),
    job: peer.job !== null && peer.jobId !== null ? { id: peer.jobId, ...peer.job } : null,
    shards: {
      total: manifest?.shardIds().length ?? 0,
      mine: manifest?.mine() ?? [],
      unowned: manifest?.unowned().length ?? 0,
      owners: Object.fromEntries(manifest?.owners() ?? [])
    },
    manifest: manifest === null ? null : { ...manifest.counters },
    ring: peer.rounds === null
      ? { round: 0, members: [], state: 'idle', attempt: 0, completed: 0, aborted: 0, last: null, events: [] }
      : {
          round: trainer?.progress.round ?? peer.rounds.status.round,
          members: peer.rounds.status.members,
          state: peer.rounds.status.state,
          attempt: peer.rounds.status.attempt,
          completed: peer.rounds.status.completed,
          aborted: peer.rounds.status.aborted,
          last: peer.rounds.status.last,
          events: peer.rounds.status.events.slice(-20),
          excluded: peer.rounds.status.excluded,
          phase: peer.ring?.status()?.state ?? null,
          group: peer.rounds.status.group,
          fastRounds: peer.rounds.status.fastRounds,
          agreedRounds: peer.rounds.status.agreedRounds,
          timing: peer.rounds.timing()
        },
    partition: peer.rounds?.status.partition ?? null,
    syncs: [...(peer.catchUp?.syncs ?? [])],
    memberEvents: peer.manifest?.events.slice(-20) ?? [],
    // null until the checkpoint is loaded: a restarted peer never shows step 0 for progress it still has
    training: trainer === null || !peer.restored
      ? null
      : {
          step: trainer.progress.step,
          epoch: trainer.epoch,
          epochs: trainer.job.epochs,
          epochProgress: trainer.epochProgress,
          stepsPerEpoch: trainer.stepsPerEpoch,
          loss: trainer.loss,
          accuracy: evaluation?.accuracy ?? null,
          testLoss: evaluation?.loss ?? null,
          bitsPerByte: evaluation !== null && trainer.job.model === 'gpt' ? evaluation.loss / Math.LN2 : null,
          samplesPerSec: Math.round(trainer.samplesPerSec),
          learningRate: trainer.learningRate,
          weightsHash: trainer.weightsHash(),
          timing: {
            computeMs: Math.round(trainer.timing.computeMs * 10) / 10,
            reduceMs: Math.round(trainer.timing.reduceMs * 10) / 10,
            applyMs: Math.round(trainer.timing.applyMs * 10) / 10
          },
          syncEvery: trainer.job.syncEvery,
          hashes: [...trainer.hashes],
          data: trainer.dataStatus
        },
    backend: peer.backend,
    compute: trainer?.computesInWorker === true ? 'worker' : 'main',
    datasets: peer.replication === null ? [] : [peer.replication.status()]
  }
}
