/**
 * Gossipsub peer scoring for our topics. The one thing scored hard is P4, invalid messages: a peer whose
 * messages our topic validators reject (or whose signatures fail) drops below zero at the first one, is
 * pruned from the mesh at the next heartbeat, and is graylisted (everything it sends ignored) after three.
 * What an honest member of a small training swarm does cannot cost it: the delivery-rate penalties (P3,
 * P3b), meant for big public meshes, are off, and so is the IP colocation penalty (P6), since a swarm often
 * runs several peers per host or behind one NAT.
 *
 * Gossipsub keeps a disconnected peer's score for an hour, but (v14) starts it afresh when the peer's stream
 * comes back, and a peer can end its own stream at will (an RPC over the size limit does it). So the same
 * penalty is kept here too, per peer, outside the router, and fed back as the application-specific score (P5),
 * which no reconnection resets.
 */
import { createPeerScoreParams, createTopicScoreParams } from '@chainsafe/libp2p-gossipsub/score'
import type { PeerScoreParams, PeerScoreThresholds, TopicScoreParams } from '@chainsafe/libp2p-gossipsub/score'

/** P4 per invalid message, squared: 1 → −10, 2 → −40, 3 → −90 (below the graylist threshold). */
export const INVALID_MESSAGE_WEIGHT = -10
/** The invalid-message counter decays by this each second: it halves in about 70 s, so a flood is remembered for minutes. */
export const INVALID_MESSAGE_DECAY = 0.99

/** Invalid messages each peer sent us (decaying like P4), kept outside the router; P5 = weight × count². */
export class InvalidMessagePenalty {
  /** Peers remembered at most; beyond that, those whose count has decayed the most are forgotten first. */
  static readonly MAX_PEERS = 4096
  private readonly counts = new Map<string, { count: number, at: number }>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  /** Invalid messages from `peer`, decayed to now. */
  count (peer: string): number {
    const entry = this.counts.get(peer)
    if (entry === undefined) return 0
    return entry.count * INVALID_MESSAGE_DECAY ** ((this.now() - entry.at) / 1000)
  }

  record (peer: string): void {
    const count = this.count(peer) + 1
    this.counts.delete(peer)
    this.counts.set(peer, { count, at: this.now() })
    if (this.counts.size > InvalidMessagePenalty.MAX_PEERS) {
      const weakest = [...this.counts.keys()].sort((a, b) => this.count(a) - this.count(b))[0]
      this.counts.delete(weakest)
    }
  }

  /** The application-specific score of `peer` (zero or negative). */
  score (peer: string): number {
    const n = this.count(peer)
    return n < 0.01 ? 0 : INVALID_MESSAGE_WEIGHT * n * n
  }
}

/** Score parameters of one of our topics (the manifest's deltas, the rounds' announcements). */
export function topicScoreParams (): TopicScoreParams {
  return createTopicScoreParams({
    topicWeight: 1,
    // P1: up to +3 for five minutes in the mesh
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 300,
    // P2: up to +5 for messages this peer delivered first
    firstMessageDeliveriesWeight: 0.1,
    firstMessageDeliveriesDecay: 0.99,
    firstMessageDeliveriesCap: 50,
    // P3, P3b: off (a quiet member is not a bad one: rounds stop while a job waits for peers)
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    // P4
    invalidMessageDeliveriesWeight: INVALID_MESSAGE_WEIGHT,
    invalidMessageDeliveriesDecay: INVALID_MESSAGE_DECAY
  })
}

export function peerScoreParams (penalty: InvalidMessagePenalty = new InvalidMessagePenalty()): PeerScoreParams {
  return createPeerScoreParams({
    // positive contributions together are worth at most this: good behaviour cannot bank credit against a flood
    topicScoreCap: 10,
    // P5: invalid messages as counted outside the router (see above)
    appSpecificScore: peer => penalty.score(peer),
    appSpecificWeight: 1,
    IPColocationFactorWeight: 0,
    // P7 (regrafting during a backoff, broken IHAVE promises): a few are forgiven (restarts), a pattern is not
    behaviourPenaltyWeight: -10,
    behaviourPenaltyThreshold: 6,
    behaviourPenaltyDecay: 0.9,
    decayInterval: 1000,
    decayToZero: 0.01,
    // a peer cannot wash a bad score by reconnecting: scores of disconnected peers are kept for an hour
    retainScore: 3600 * 1000
  })
}

export const PEER_SCORE_THRESHOLDS: PeerScoreThresholds = {
  /** Below this no gossip (IHAVE/IWANT) is exchanged with the peer. */
  gossipThreshold: -10,
  /** Below this nothing is published to the peer. */
  publishThreshold: -50,
  /** Below this everything the peer sends is ignored. */
  graylistThreshold: -80,
  /** Peer exchange is off in our swarms; a high bar in case it is ever turned on. */
  acceptPXThreshold: 10,
  /** Our positive scores are small (capped at 10): graft better peers when the mesh's median is below 1. */
  opportunisticGraftThreshold: 1
}
