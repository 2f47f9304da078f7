/**
 * What `peer status --json` prints. The fields of the status contract (README,
 * "Status contract") are never renamed; new ones are added beside them.
 */
import type { Job } from '../../protocols/job/index.ts'
import type { BackendName } from '../trainer/index.ts'
import type { ReconnectStatus } from '../network/index.ts'
import type { ReplicationStatus } from '../shard-transfer/index.ts'
import type { Peer } from './index.ts'

export interface PeerStatus {
  peerId: string | null
  addresses: string[]
  state: string
  error: string | null
  pid: number
  dataDir: string
  uptimeSec: number
  peers: Array<{ peerId: string, addresses: string[], gossipScore?: number, invalidMessages?: number }>
  /** Whether the swarm is private (a key is in use: its fingerprint, never the key), the allow-list, refusals. */
  security: { privateNetwork: boolean, keyFingerprint: string | null, allowList: number | null, refused: number, gossipRefused: number } | null
  /** Redialling members that are not connected: dials made, dials that connected, who is tried next and when. */
  network: { reconnect: ReconnectStatus | null } | null
  /** Swarm members as this peer's manifest knows them. */
  members: Array<{ peerId: string, state: string, live: boolean, step: number | null, shards: number }>
  job: (Job & { id: string }) | null
  shards: { total: number, mine: string[], unowned: number, owners: Record<string, string | null> }
  manifest: { deltasReceived: number, deltasRejected: number, syncs: number, syncsFailed: number } | null
  ring: {
    round: number
    members: string[]
    state: string
    attempt: number
    completed: number
    aborted: number
    /** The last round's all-reduce: time, bytes this peer sent, bandwidth (bytes/s of the vector). */
    last: { round: number, ms: number, bytesSent: number, algbw: number, members: number } | null
    events: Array<{ at: number, kind: string, round: number, detail: string, culprit?: string }>
    excluded?: Array<{ peer: string, until: number, strikes: number }>
    /** The ring's own phase in the round under way or the last one: `connecting`, `reduce-scatter k/N−1`, `all-gather k/N−1`, `aborting`, `aborted`, `done`. */
    phase?: string | null
    /** The group rounds run in (agreed once, reused until a round fails or the membership changes). */
    group?: { epoch: number, members: string[] } | null
    /** Rounds that reused the group (no agreement on the critical path), and rounds that agreed on one first. */
    fastRounds?: number
    agreedRounds?: number
  }
  /**
   * Set while this peer holds no quorum of its last group (cut off, or on the smaller side of a split): it does
   * not advance its model, keeps redialling, and takes the winning state once it reaches the others.
   */
  partition: { since: number, reachable: number, needed: number, group: { epoch: number, members: string[] } } | null
  /** Membership changes this peer saw: members that joined, were lost, or left. */
  memberEvents: Array<{ at: number, kind: string, peer: string }>
  /** State fetched from the swarm (joins, catch-ups). */
  syncs: Array<{ at: number, round: number, bytes: number, ms: number, donors: number, from?: string[], adopted?: boolean }>
  training: {
    step: number
    epoch: number
    epochs: number
    /** Fraction of the current epoch done, 0..1. */
    epochProgress: number
    stepsPerEpoch: number
    loss: number | null
    accuracy: number | null
    /** Mean loss on the held-out split at the last evaluation (a gpt job: cross-entropy in nats per token). */
    testLoss: number | null
    /** A gpt job: testLoss in bits per byte (nats / ln 2: a token is a byte); null for other models. */
    bitsPerByte: number | null
    samplesPerSec: number
    weightsHash: string | null
    /** Where a step's time goes (ms, smoothed): computing the update, reducing it with the swarm (waiting included), applying it. */
    timing: { computeMs: number, reduceMs: number, applyMs: number }
    syncEvery: number
    /** The weights hash after every 16th round, the last 16 of them: members of one swarm agree round by round. */
    hashes: Array<{ round: number, hash: string }>
  } | null
  backend: BackendName | null
  /**
   * Per imported data set of the job: training shards, how many this peer holds (and which), R, live copies of each
   * shard swarm-wide, the shards below R, and what this process fetched and dropped. Empty for a built-in data set.
   */
  datasets: ReplicationStatus[]
}

function members (peer: Peer): PeerStatus['members'] {
  const manifest = peer.manifest
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

export function buildStatus (peer: Peer): PeerStatus {
  const trainer = peer.trainer
  const manifest = peer.manifest
  const evaluation = trainer?.lastEvaluation ?? null
  return {
    peerId: peer.network?.peerId ?? null,
    addresses: peer.network?.addresses() ?? [],
    state: peer.state,
    error: peer.error,
    pid: process.pid,
    dataDir: peer.options.dataDir,
    uptimeSec: Math.round((Date.now() - peer.startedAt) / 1000),
    peers: peer.network?.connectedPeers() ?? [],
    security: peer.network === null ? null : { ...peer.network.security },
    network: peer.network === null ? null : { reconnect: peer.reconnect?.status ?? null },
    members: members(peer),
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
          agreedRounds: peer.rounds.status.agreedRounds
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
          weightsHash: trainer.weightsHash(),
          timing: {
            computeMs: Math.round(trainer.timing.computeMs * 10) / 10,
            reduceMs: Math.round(trainer.timing.reduceMs * 10) / 10,
            applyMs: Math.round(trainer.timing.applyMs * 10) / 10
          },
          syncEvery: trainer.job.syncEvery,
          hashes: [...trainer.hashes]
        },
    backend: peer.backend,
    datasets: peer.replication === null ? [] : [peer.replication.status()]
  }
}
