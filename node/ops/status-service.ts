/**
 * The `/peer/status/1.0.0` service: answers other members with this peer's
 * summary, asks them for theirs, and puts a swarm-wide view together.
 */
import type { IncomingStreamData, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ProtocolService, readFrame, writeFrames } from '../../protocols/common/index.ts'
import {
  InvalidMessageError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, MAX_STREAMS, REQUEST_TIMEOUT_MS, STATUS_PROTOCOL,
  StatusRequestError, TimeoutError, decodeRequest, decodeResponse, encodeRequest, encodeResponse
} from '../../protocols/status/index.ts'
import type { MemberStatus } from '../../protocols/status/index.ts'
import type { Agreement, SwarmRow, SwarmView } from './types.ts'

export interface StatusServiceComponents {
  node: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'> & { peerId: { toString: () => string } }
  /** This peer's summary now. */
  summary: () => MemberStatus
  /** Makes a member dialable by id (learns its addresses from the manifest) before it is asked. */
  prepare?: (peer: string) => Promise<void>
  logger?: Pick<Logger, 'debug'>
}

export interface StatusServiceInit {
  /** Per-request timeout, dial included (default REQUEST_TIMEOUT_MS). */
  timeoutMs?: number
}

function describe (err: unknown): string {
  const e = err as Error
  return `${e.name ?? 'Error'}: ${e.message ?? String(err)}`
}

/** Answers status requests on `/peer/status/1.0.0` while started, and asks other peers for theirs. */
export class StatusService extends ProtocolService {
  private readonly components: StatusServiceComponents
  private readonly timeoutMs: number
  served = 0
  rejected = 0

  constructor (components: StatusServiceComponents, init: StatusServiceInit = {}) {
    super(components.node, { protocol: STATUS_PROTOCOL, maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })
    this.components = components
    this.timeoutMs = init.timeoutMs ?? REQUEST_TIMEOUT_MS
  }

  protected onStream ({ stream }: IncomingStreamData): void {
    void this.serve(stream)
  }

  private async serve (stream: Stream): Promise<void> {
    const timer = setTimeout(() => { stream.abort(new TimeoutError(`no status request within ${this.timeoutMs} ms`)) }, this.timeoutMs)
    try {
      const frame = await readFrame(stream.source, MAX_REQUEST_BYTES)
      if (frame === null) throw new InvalidMessageError('stream ended before a request')
      decodeRequest(frame)
      let answer: Uint8Array
      try {
        answer = encodeResponse({ ok: true, status: this.components.summary() })
      } catch (err) {
        answer = encodeResponse({ ok: false, error: describe(err).slice(0, 512) })
      }
      await writeFrames(stream, answer)
      await stream.close()
      this.served += 1
    } catch (err) {
      // an invalid request counts as rejected; one cut short (the asker went away mid-frame) does not
      if ((err as Error).name === 'InvalidMessageError' && (err as InvalidMessageError).kind !== 'truncated') this.rejected += 1
      this.components.logger?.debug({ err: describe(err) }, 'status request failed')
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Asks one member for its summary; throws TimeoutError, InvalidMessageError or StatusRequestError. */
  async ask (peer: string, signal?: AbortSignal): Promise<MemberStatus> {
    const deadline = signal ?? AbortSignal.timeout(this.timeoutMs)
    let stream: Stream | null = null
    const onAbort = (): void => { stream?.abort(new TimeoutError(`${peer} did not answer within ${this.timeoutMs} ms`)) }
    deadline.addEventListener('abort', onAbort, { once: true })
    try {
      await this.components.prepare?.(peer)
      stream = await this.components.node.dialProtocol(peerIdFromString(peer), STATUS_PROTOCOL, { signal: deadline })
      await writeFrames(stream, encodeRequest({ op: 'status' }))
      const frame = await readFrame(stream.source, MAX_RESPONSE_BYTES)
      if (frame === null) throw new StatusRequestError(`${peer} closed the stream without answering`)
      const res = decodeResponse(frame)
      if (!res.ok) throw new StatusRequestError(`${peer} answered: ${res.error}`)
      if (res.status.peerId !== peer) throw new InvalidMessageError(`${peer} answered with the status of ${res.status.peerId}`)
      await stream.close().catch(() => {})
      return res.status
    } catch (err) {
      stream?.abort(err as Error)
      if (deadline.aborted) throw new TimeoutError(`${peer} did not answer within ${this.timeoutMs} ms`)
      throw err
    } finally {
      deadline.removeEventListener('abort', onAbort)
    }
  }

  /** Every member's summary (this peer's from memory, the others' over the network, in parallel). */
  async gather (members: string[], ring: string[] = []): Promise<SwarmView> {
    const started = performance.now()
    const self = this.components.node.peerId.toString()
    const ids = [...new Set([self, ...members])].sort()
    const rows: SwarmRow[] = await Promise.all(ids.map(async (peerId): Promise<SwarmRow> => {
      try {
        const status = peerId === self ? this.components.summary() : await this.ask(peerId)
        return { peerId, self: peerId === self, reachable: true, error: null, status, agreement: 'unknown', linkBytesPerSec: linkRate(status) }
      } catch (err) {
        return { peerId, self: peerId === self, reachable: false, error: describe(err), status: null, agreement: 'unknown', linkBytesPerSec: null }
      }
    }))
    markAgreement(rows)
    return { at: Date.now(), peerId: self, members: rows, ring, ms: Math.round(performance.now() - started) }
  }
}

/** Bytes per second a member sent its successor in its last completed round. */
function linkRate (status: MemberStatus): number | null {
  const last = status.ring.last
  if (last === null || last.ms <= 0 || last.members < 2) return null
  return Math.round(last.bytesSent / (last.ms / 1000))
}

/**
 * Compares weight hashes among members at the same round: the most common
 * hash at a round is the swarm's; a member with another one has diverged.
 */
export function markAgreement (rows: SwarmRow[]): void {
  const byRound = new Map<number, SwarmRow[]>()
  for (const row of rows) {
    const t = row.status?.training
    if (t === null || t === undefined || t.weightsHash === null) continue
    const list = byRound.get(t.round) ?? []
    list.push(row)
    byRound.set(t.round, list)
  }
  if (byRound.size === 1 && [...byRound.values()][0].length === 1) return // a swarm of one: nothing to compare with
  for (const group of byRound.values()) {
    if (group.length < 2) {
      group[0].agreement = 'alone'
      continue
    }
    const counts = new Map<string, number>()
    for (const row of group) {
      const h = row.status!.training!.weightsHash!
      counts.set(h, (counts.get(h) ?? 0) + 1)
    }
    const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0][0]
    for (const row of group) row.agreement = (row.status!.training!.weightsHash === top ? 'agree' : 'differs') satisfies Agreement
  }
}
