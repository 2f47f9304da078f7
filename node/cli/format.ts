/** Human-readable renderings of a peer's status, shared by `peer start` and `peer status`. */
import type { PeerStatus } from '../peer/status.ts'

export function bar (fraction: number, width = 20): string {
  const f = Math.max(0, Math.min(1, fraction))
  const full = Math.round(f * width)
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`
}

const num = (v: number | null | undefined, digits = 4): string => (v === null || v === undefined ? '-' : v.toFixed(digits))

/** One line of training progress. */
export function progressLine (s: PeerStatus): string {
  const t = s.training
  if (t === null) return `${s.state}`
  const epoch = Math.min(t.epoch + 1, t.epochs)
  const frac = t.epoch >= t.epochs ? 1 : t.epochProgress
  return `${s.state.padEnd(9)} epoch ${epoch}/${t.epochs} ${bar(frac)} ${(frac * 100).toFixed(0).padStart(3)}%  step ${t.step}  loss ${num(t.loss)}  test acc ${num(t.accuracy)}  ${t.samplesPerSec} samples/s`
}

/** The compact view of `peer status`. */
export function statusView (s: PeerStatus): string {
  const t = s.training
  const lines = [
    `peer      ${s.peerId ?? '(no network yet)'}  pid ${s.pid}`,
    ...s.addresses.slice(0, 4).map(a => `          ${a}`),
    `state     ${s.state}${s.error !== null ? `  (${s.error})` : ''}`,
    `backend   ${s.backend ?? '-'}`,
    `job       ${s.job === null ? '-' : `${s.job.id}  ${s.job.dataset}/${s.job.model} hidden ${s.job.hidden.join(',')}  batch ${s.job.batchSize}  ${s.job.optimizer} lr ${s.job.learningRate}  ${s.job.epochs} epochs`}`,
    `data dir  ${s.dataDir}`
  ]
  lines.push(
    `swarm     ${s.peers.length} connected, ${s.members.filter(m => m.live).length} live members of ${s.members.length} known`,
    `shards    ${s.shards.mine.length} mine of ${s.shards.total}, ${s.shards.unowned} unowned`
  )
  for (const m of s.members) {
    lines.push(`  ${m.peerId === s.peerId ? '*' : ' '} ${m.peerId}  ${(m.live ? 'live' : m.state).padEnd(5)} step ${m.step ?? '-'}  ${m.shards} shards`)
  }
  if (t !== null) {
    lines.push(
      `step      ${t.step}  epoch ${Math.min(t.epoch + 1, t.epochs)}/${t.epochs} ${bar(t.epoch >= t.epochs ? 1 : t.epochProgress)} ${((t.epoch >= t.epochs ? 1 : t.epochProgress) * 100).toFixed(0)}%`,
      `loss      ${num(t.loss)}  (smoothed training loss)`,
      `accuracy  ${num(t.accuracy)}  (held-out test split, last evaluation; test loss ${num(t.testLoss)})`,
      `speed     ${t.samplesPerSec} samples/s`,
      `weights   ${t.weightsHash ?? '-'}`
    )
  }
  return lines.join('\n')
}
