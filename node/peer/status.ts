/**
 * What a peer reports: `PeerStatus` (what `peer status --json` prints) and
 * the events a running peer emits. A leaf: it imports only types, so the CLI,
 * the control API's client and node/ops read it without loading the peer.
 * The fields of the status contract (README, "Status contract") are never
 * renamed; new ones are added beside them.
 */
import type { Job } from '../../protocols/job/index.ts'
import type { BackendName, DataStatus, Evaluation } from '../trainer/index.ts'
import type { ReconnectStatus } from '../network/index.ts'
import type { ReplicationStatus } from '../shard-transfer/index.ts'
import type { LastRound, PartitionStatus, RoundEvent, RoundFigures, RoundsStatus, RoundTiming } from '../rounds/index.ts'
import type { SyncRecord } from '../state-sync/catch-up.ts'

export type { LastRound, RoundFigures } from '../rounds/index.ts'

/** The events of a running peer. */
export interface PeerEvents {
  state: [string]
  /** A round this peer took part in completed (not emitted when it was alone: no all-reduce ran). */
  round: [RoundFigures]
  /** Waiting for --min-peers: members live so far, and how many are needed. */
  waiting: [{ live: number, needed: number }]
  evaluation: [Evaluation]
  checkpoint: [number]
}

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
    last: LastRound | null
    events: RoundEvent[]
    excluded?: RoundsStatus['excluded']
    /** The ring's own phase in the round under way or the last one: `connecting`, `reduce-scatter k/N−1`, `all-gather k/N−1`, `aborting`, `aborted`, `done`. */
    phase?: string | null
    /** The group rounds run in (agreed once, reused until a round fails or the membership changes). */
    group?: RoundsStatus['group']
    /** Rounds that reused the group (no agreement on the critical path), and rounds that agreed on one first. */
    fastRounds?: number
    agreedRounds?: number
    /**
     * The last completed rounds (up to 256) in ms: p50/p90/p99/mean as the trainer waits for them, the ring's
     * own median, and the median of what the rounds add to the ring; null before the first round with others.
     */
    timing?: RoundTiming | null
  }
  /**
   * Set while this peer holds no quorum of its last group (cut off, or on the smaller side of a split): it does
   * not advance its model, keeps redialling, and takes the winning state once it reaches the others.
   */
  partition: PartitionStatus | null
  /** Membership changes this peer saw: members that joined, were lost, or left. */
  memberEvents: Array<{ at: number, kind: string, peer: string }>
  /** State fetched from the swarm (joins, catch-ups). */
  syncs: SyncRecord[]
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
    /** The learning rate of the last step: the job's, or scaled with the swarm's batch (job `lrScaling`). */
    learningRate: number
    weightsHash: string | null
    /** Where a step's time goes (ms, smoothed): computing the update, reducing it with the swarm (waiting included), applying it. */
    timing: { computeMs: number, reduceMs: number, applyMs: number }
    syncEvery: number
    /** The weights hash after every 16th round, the last 16 of them: members of one swarm agree round by round. */
    hashes: Array<{ round: number, hash: string }>
    /** The swarm's data position: every row once an epoch (node/data/epoch.ts). */
    data: DataStatus
  } | null
  backend: BackendName | null
  /** Where the gradients are computed: this peer's main thread, or a worker thread (`--compute worker`). */
  compute: 'main' | 'worker'
  /**
   * Per imported data set of the job: training shards, how many this peer holds (and which), R, live copies of each
   * shard swarm-wide, the shards below R, and what this process fetched and dropped. Empty for a built-in data set.
   */
  datasets: ReplicationStatus[]
}
