/** Human-readable renderings of a peer's status, shared by `peer start` and `peer status`. */
import { GPT_DEFAULTS } from '../../protocols/job/index.ts'
import type { PeerStatus } from '../peer/status.ts'
import type { Agreement, SwarmView } from '../ops/types.ts'

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

/** One imported data set as `peer status` and `peer dataset ls` show it: shards here, copies swarm-wide, shards below R. */
export function datasetLine (d: PeerStatus['datasets'][number], withId = true): string {
  const copies = Object.values(d.copies)
  const least = copies.length === 0 ? 0 : Math.min(...copies)
  const below = d.belowReplicas.length === 0 ? `every shard on >= ${d.replicas} peers` : `${d.belowReplicas.length} below R=${d.replicas}: ${d.belowReplicas.slice(0, 8).join(' ')}${d.belowReplicas.length > 8 ? ' …' : ''}`
  return `${withId ? `${d.dataset}  ` : ''}${d.held} of ${d.shards} shards here  copies min ${least} max ${copies.length === 0 ? 0 : Math.max(...copies)}  ${below}${d.fetching !== null ? `  fetching ${d.fetching}` : ''}${unavailableNote(d.unavailable)}`
}

/** Shards no live peer could send (the status's `unavailable`; absent from an older peer's status). */
function unavailableNote (unavailable: Record<string, number> | undefined): string {
  const ids = Object.keys(unavailable ?? {})
  if (ids.length === 0) return ''
  const longest = Math.max(...Object.values(unavailable ?? {}))
  return `  ${ids.length} UNAVAILABLE (no live peer sent them, up to ${Math.round(longest / 1000)} s): ${ids.slice(0, 8).join(' ')}${ids.length > 8 ? ' …' : ''}`
}

/** The compact view of `peer status`. */
export function statusView (s: PeerStatus): string {
  const t = s.training
  const lines = [
    `peer      ${s.peerId ?? '(no network yet)'}  pid ${s.pid}`,
    ...s.addresses.slice(0, 4).map(a => `          ${a}`),
    `state     ${s.state}${s.error !== null ? `  (${s.error})` : ''}`,
    `backend   ${s.backend ?? '-'}${s.compute === 'worker' ? ' (gradients in a worker thread)' : ''}`,
    `job       ${s.job === null ? '-' : `${s.job.id}  ${s.job.dataset}/${s.job.model} ${s.job.model === 'gpt' ? `layers ${s.job.gpt?.layers ?? GPT_DEFAULTS.layers} dim ${s.job.gpt?.dim ?? GPT_DEFAULTS.dim} heads ${s.job.gpt?.heads ?? GPT_DEFAULTS.heads} context ${s.job.gpt?.context ?? 'of the data set'}` : s.job.model.startsWith('mdl-') ? '(the user\'s model)' : `hidden ${s.job.hidden.join(',')}`}  batch ${s.job.batchSize}  ${s.job.optimizer} lr ${s.job.learningRate}  ${s.job.epochs} epochs`}`,
    `data dir  ${s.dataDir}`
  ]
  lines.push(
    `swarm     ${s.peers.length} connected, ${s.members.filter(m => m.live).length} live members of ${s.members.length} known`,
    `shards    ${s.shards.mine.length} mine of ${s.shards.total}, ${s.shards.unowned} unowned`
  )
  for (const m of s.members) {
    lines.push(`  ${m.peerId === s.peerId ? '*' : ' '} ${m.peerId}  ${(m.live ? 'live' : m.state).padEnd(5)} step ${m.step ?? '-'}  ${m.shards} shards`)
  }
  for (const d of s.datasets ?? []) lines.push(`data set  ${datasetLine(d)}`)
  if (t !== null) {
    lines.push(
      `step      ${t.step}  epoch ${Math.min(t.epoch + 1, t.epochs)}/${t.epochs} ${bar(t.epoch >= t.epochs ? 1 : t.epochProgress)} ${((t.epoch >= t.epochs ? 1 : t.epochProgress) * 100).toFixed(0)}%`,
      `loss      ${num(t.loss)}  (smoothed training loss)`,
      t.bitsPerByte != null
        ? `accuracy  ${num(t.accuracy)}  (next byte, held-out split, last evaluation; test loss ${num(t.testLoss)} nats per token, ${num(t.bitsPerByte)} bits per byte)`
        : `accuracy  ${num(t.accuracy)}  (held-out test split, last evaluation; test loss ${num(t.testLoss)})`,
      `speed     ${t.samplesPerSec} samples/s`,
      `weights   ${t.weightsHash ?? '-'}`
    )
  }
  return lines.join('\n')
}

const shortId = (id: string): string => (id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id)

const AGREEMENT: Record<Agreement, string> = { agree: 'agree', differs: 'DIFFERS', alone: 'other round', unknown: '-' }

function rateText (bytesPerSec: number | null): string {
  if (bytesPerSec === null) return '-'
  if (bytesPerSec >= 1e9) return `${(bytesPerSec / 1e9).toFixed(2)} GB/s`
  if (bytesPerSec >= 1e6) return `${(bytesPerSec / 1e6).toFixed(1)} MB/s`
  if (bytesPerSec >= 1e3) return `${(bytesPerSec / 1e3).toFixed(1)} kB/s`
  return `${Math.round(bytesPerSec)} B/s`
}

/** Lays out rows of cells as aligned columns (numbers right-aligned). */
export function table (header: string[], rows: string[][], numeric: boolean[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => (numeric[i] === true ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

/** `peer status --swarm`: one row per live member, as the peer asked gathered them. */
export function swarmView (v: SwarmView): string {
  const rows = v.members.map(m => {
    const s = m.status
    const t = s?.training ?? null
    return [
      `${m.self ? '*' : ' '} ${shortId(m.peerId)}`,
      m.reachable ? (s?.state ?? '-') : 'unreachable',
      t === null ? '-' : String(t.step),
      t === null ? '-' : String(t.round),
      num(t?.loss),
      t?.accuracy === null || t?.accuracy === undefined ? '-' : t.accuracy.toFixed(4),
      s === null ? '-' : `${s.shards.mine}/${s.shards.total}`,
      s?.ring.last === null || s?.ring.last === undefined ? '-' : `${s.ring.last.ms.toFixed(1)} ms`,
      rateText(m.linkBytesPerSec),
      t?.weightsHash === null || t?.weightsHash === undefined ? '-' : `${t.weightsHash.slice(0, 8)} ${AGREEMENT[m.agreement]}`
    ]
  })
  const reachable = v.members.filter(m => m.reachable).length
  const differ = v.members.filter(m => m.agreement === 'differs').length
  const lines = [
    table(['  PEER', 'STATE', 'STEP', 'ROUND', 'LOSS', 'ACCURACY', 'SHARDS', 'LAST ROUND', 'LINK', 'WEIGHTS'], rows, [false, false, true, true, true, true, true, true, true, false]),
    '',
    `${v.members.length} live member${v.members.length === 1 ? '' : 's'}, ${reachable} answered (gathered by ${shortId(v.peerId)} in ${v.ms} ms)${differ > 0 ? `; ${differ} with weights that differ from the others at the same round` : ''}`
  ]
  for (const m of v.members) if (!m.reachable) lines.push(`  ${shortId(m.peerId)}: ${m.error ?? 'no answer'}`)
  return lines.join('\n')
}
