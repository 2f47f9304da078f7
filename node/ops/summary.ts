/** A member's summary for `/peer/status/1.0.0`, taken from the peer's status. */
import type { MemberStatus } from '../../protocols/status/index.ts'
import { MAX_MEMBERS } from '../../protocols/status/index.ts'
import type { PeerStatus } from '../peer/status.ts'

const finiteOrNull = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
const count = (v: number | null | undefined): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0)

export function memberSummary (s: PeerStatus, now = Date.now()): MemberStatus {
  const t = s.training
  const accuracy = finiteOrNull(t?.accuracy)
  const last = s.ring.last
  return {
    peerId: s.peerId ?? '',
    state: s.state.slice(0, 64),
    at: now,
    uptimeSec: count(s.uptimeSec),
    backend: s.backend,
    jobId: s.job?.id ?? null,
    peers: s.peers.length,
    training: t === null
      ? null
      : {
          step: count(t.step),
          round: count(s.ring.round),
          epoch: count(t.epoch),
          epochs: count(t.epochs),
          epochProgress: Math.min(1, Math.max(0, finiteOrNull(t.epochProgress) ?? 0)),
          loss: finiteOrNull(t.loss),
          accuracy: accuracy === null ? null : Math.min(1, Math.max(0, accuracy)),
          testLoss: finiteOrNull(t.testLoss),
          samplesPerSec: Math.max(0, finiteOrNull(t.samplesPerSec) ?? 0),
          weightsHash: t.weightsHash !== null && /^[0-9a-f]{1,64}$/.test(t.weightsHash) ? t.weightsHash : null
        },
    shards: { mine: s.shards.mine.length, total: count(s.shards.total) },
    ring: {
      state: s.ring.state.slice(0, 64),
      completed: count(s.ring.completed),
      aborted: count(s.ring.aborted),
      members: s.ring.members.slice(0, MAX_MEMBERS),
      last: last === null
        ? null
        : { round: count(last.round), ms: Math.max(0, finiteOrNull(last.ms) ?? 0), bytesSent: count(last.bytesSent), algbw: Math.max(0, finiteOrNull(last.algbw) ?? 0), members: count(last.members) }
    }
  }
}
