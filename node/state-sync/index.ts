/**
 * State sync: a joining (or lagging) peer fetches the swarm's training state
 * from several donors at once, part by part, and checks it against the hash
 * the donors announce. Members at the same round encode identical bytes, so
 * any of them can serve any part; a part that fails is fetched from another
 * donor, and parts already fetched are kept if the whole fetch is retried.
 * Donors are the members of the highest group rank (`winningDonors`, donors.ts).
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const server = new StateSyncServer({ network, snapshot: () => trainer.swarmSnapshot(), weightsHash: () => trainer.weightsHash(), logger })
 * await server.start()
 * const { checkpoint } = await fetchState({ network, donors: ['12D3…', '12D3…'] })
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { peerIdFromString } from '@libp2p/peer-id'
import type { IncomingStreamData, Stream } from '@libp2p/interface'
import { ProtocolService, framed } from '../../protocols/common/index.ts'
import {
  InvalidMessageError, MAX_FRAME_BYTES, MAX_REQUESTS_PER_STREAM, MAX_STREAMS, PART_BYTES, REQUEST_TIMEOUT_MS,
  SNAPSHOTS_KEPT, STATE_SYNC_PROTOCOL, StateSyncError,
  decodeRequest, decodeResponse, encodeError, encodeMeta, encodePart, encodeRequest, partCount
} from '../../protocols/state-sync/index.ts'
import type { StateMeta } from '../../protocols/state-sync/index.ts'
import type { Network } from '../network/index.ts'
import { decodeCheckpoint, encodeCheckpoint } from '../trainer/checkpoint.ts'
import type { Checkpoint } from '../trainer/checkpoint.ts'

export { StateSyncError } from '../../protocols/state-sync/index.ts'
export { winningDonors } from './donors.ts'
export type { Candidate } from './donors.ts'

interface Snapshot {
  meta: StateMeta
  bytes: Uint8Array
}

/** How long a donor keeps its encoded snapshots after the last request for them. */
const SNAPSHOT_IDLE_MS = 60_000
/**
 * A peer counts as fetching this long after its last request: the time to check and adopt the state and
 * compute its first update, after its last part (seconds for a big model on a busy machine).
 */
const FETCHING_WINDOW_MS = 20_000
/**
 * The smallest state whose fetchers count as fetching: below it a fetch is over within the rounds' collect
 * timeout anyway, and rounds go on as they always did.
 */
const HOLD_MIN_STATE_BYTES = 16 * 1024 * 1024

export interface StateSyncServerComponents {
  network: Network
  /** The state to serve now (members at the same round must produce the same checkpoint). */
  snapshot: () => Promise<Checkpoint>
  weightsHash: () => string
  logger: Logger
}

/** Serves this peer's state to joiners. */
export class StateSyncServer extends ProtocolService {
  private readonly components: StateSyncServerComponents
  private readonly snapshots: Snapshot[] = []
  private making: Promise<Snapshot> | null = null
  private idleTimer: NodeJS.Timeout | null = null
  /** When each peer last asked for anything (see fetching). */
  private readonly lastAsked = new Map<string, number>()
  served = 0

  constructor (components: StateSyncServerComponents) {
    super(components.network.node, { protocol: STATE_SYNC_PROTOCOL, maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })
    this.components = components
  }

  protected onStream ({ stream, connection }: IncomingStreamData): void {
    void this.serve(stream, connection.remotePeer.toString())
  }

  override async stop (): Promise<void> {
    await super.stop()
    this.dropSnapshots()
  }

  /**
   * The peers that asked this donor for a state of HOLD_MIN_STATE_BYTES or more within the last `withinMs`:
   * joiners still fetching it (or about to adopt it), whom the rounds wait for (RoundsComponents.fetching).
   */
  fetching (withinMs = FETCHING_WINDOW_MS): string[] {
    const since = Date.now() - withinMs
    const out: string[] = []
    for (const [peer, at] of this.lastAsked) {
      if (at >= since) out.push(peer)
      else this.lastAsked.delete(peer)
    }
    return out
  }

  /** Only a big state's fetch outlasts the rounds' own wait for a joiner (small ones take well under a second). */
  private noteAsked (peer: string, snapshot: Snapshot): void {
    if (snapshot.bytes.byteLength >= HOLD_MIN_STATE_BYTES) this.lastAsked.set(peer, Date.now())
  }

  /**
   * A snapshot is the whole encoded state (hundreds of MB for a big model): kept while joiners fetch it, dropped
   * once none has asked for anything in SNAPSHOT_IDLE_MS.
   */
  private touch (): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => { this.dropSnapshots() }, SNAPSHOT_IDLE_MS)
    this.idleTimer.unref()
  }

  private dropSnapshots (): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
    this.snapshots.length = 0
  }

  private async current (): Promise<Snapshot> {
    this.making ??= (async () => {
      const ckpt = await this.components.snapshot()
      const existing = this.snapshots.find(s => s.meta.step === ckpt.progress.step)
      if (existing !== undefined) return existing
      const bytes = encodeCheckpoint(ckpt)
      const snapshot: Snapshot = {
        bytes,
        meta: {
          ok: true,
          snapshot: createHash('sha256').update(bytes).digest('hex'),
          round: ckpt.progress.round,
          step: ckpt.progress.step,
          weightsHash: this.components.weightsHash(),
          bytes: bytes.byteLength,
          partBytes: PART_BYTES
        }
      }
      this.snapshots.push(snapshot)
      while (this.snapshots.length > SNAPSHOTS_KEPT) this.snapshots.shift()
      return snapshot
    })().finally(() => { this.making = null })
    return await this.making
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    const io = framed(stream, MAX_FRAME_BYTES)
    try {
      for (let i = 0; i < MAX_REQUESTS_PER_STREAM; i++) {
        const frame = await withTimeout(io.next(), REQUEST_TIMEOUT_MS * 3, 'idle state-sync stream')
        if (frame === null) break
        this.touch()
        const req = decodeRequest(frame)
        if (req.op === 'meta') {
          const current = await this.current()
          this.noteAsked(peer, current)
          io.send(encodeMeta(current.meta))
          continue
        }
        const snap = this.snapshots.find(s => s.meta.snapshot === req.snapshot)
        if (snap === undefined) {
          io.send(encodeError('snapshot no longer kept: ask for metadata again'))
          continue
        }
        this.noteAsked(peer, snap)
        const start = req.index * PART_BYTES
        if (start >= snap.bytes.byteLength && !(start === 0 && snap.bytes.byteLength === 0)) {
          io.send(encodeError(`no part ${req.index}`))
          continue
        }
        io.send(encodePart(snap.bytes.subarray(start, Math.min(start + PART_BYTES, snap.bytes.byteLength))))
        this.served += 1
      }
      await io.close()
    } catch (err) {
      this.components.logger.debug({ err: (err as Error).message }, 'state-sync stream ended with an error')
      io.abort(err as Error)
    }
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => { reject(new StateSyncError(`${what}: timed out after ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export interface FetchOptions {
  network: Network
  donors: string[]
  signal?: AbortSignal
  onProgress?: (done: number, total: number) => void
  logger?: Logger
}

export interface FetchResult {
  checkpoint: Checkpoint
  meta: StateMeta
  /** Donors that served at least one part. */
  donorsUsed: string[]
  bytes: number
  ms: number
}

/**
 * The state being fetched, by snapshot hash: one buffer of the whole state, each part copied into its place as
 * it arrives (no per-part buffers, no assembly copy at the end), and which parts are in. Kept when a fetch fails,
 * so that a retry of the same snapshot only asks for what is missing; only the latest snapshot's is kept.
 */
const partial = new Map<string, { bytes: Uint8Array, have: Set<number> }>()

class DonorSession {
  readonly peer: string
  private readonly io: ReturnType<typeof framed>

  private constructor (peer: string, io: ReturnType<typeof framed>) {
    this.peer = peer
    this.io = io
  }

  static async open (network: Network, peer: string, signal?: AbortSignal): Promise<DonorSession> {
    // the caller's signal cancels the dial; the timeout bounds it either way
    const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    const stream = await network.node.dialProtocol(peerIdFromString(peer), STATE_SYNC_PROTOCOL, { signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) })
    return new DonorSession(peer, framed(stream, MAX_FRAME_BYTES))
  }

  async meta (): Promise<StateMeta> {
    this.io.send(encodeRequest({ op: 'meta' }))
    const res = await this.response()
    if (res.kind === 'error') throw new StateSyncError(`${this.peer}: ${res.error}`)
    if (res.kind !== 'meta') throw new InvalidMessageError('expected metadata')
    return res.meta
  }

  /** The part's bytes: a view of the frame, valid until the next request on this session. */
  async part (snapshot: string, index: number): Promise<Uint8Array> {
    this.io.send(encodeRequest({ op: 'part', snapshot, index }))
    const res = await this.response()
    if (res.kind === 'error') throw new StateSyncError(`${this.peer}: ${res.error}`)
    if (res.kind !== 'part') throw new InvalidMessageError('expected a part')
    return res.bytes
  }

  private async response (): Promise<ReturnType<typeof decodeResponse>> {
    const frame = await withTimeout(this.io.next(), REQUEST_TIMEOUT_MS, `state sync with ${this.peer}`)
    if (frame === null) throw new StateSyncError(`${this.peer} closed the stream`)
    return decodeResponse(frame)
  }

  async close (): Promise<void> {
    await this.io.close().catch(() => {})
  }

  abort (): void {
    this.io.abort(new Error('state sync done'))
  }
}

/**
 * Fetches the swarm's state from `donors`: asks each for its snapshot's
 * metadata, takes the snapshot most donors hold (the latest round on a tie),
 * and pulls its parts from all of those donors in parallel.
 */
export async function fetchState (opts: FetchOptions): Promise<FetchResult> {
  const started = performance.now()
  const sessions: DonorSession[] = []
  try {
    const opened = await Promise.allSettled(opts.donors.map(async d => await DonorSession.open(opts.network, d, opts.signal)))
    for (const o of opened) if (o.status === 'fulfilled') sessions.push(o.value)
    if (sessions.length === 0) throw new StateSyncError(`no donor reachable among ${opts.donors.length}`)
    const metas = await Promise.allSettled(sessions.map(async s => ({ s, meta: await s.meta() })))
    const offers = metas.flatMap(m => m.status === 'fulfilled' ? [m.value] : [])
    if (offers.length === 0) throw new StateSyncError('no donor answered with its state')
    const groups = new Map<string, { meta: StateMeta, donors: DonorSession[] }>()
    for (const { s, meta } of offers) {
      const g = groups.get(meta.snapshot) ?? { meta, donors: [] }
      g.donors.push(s)
      groups.set(meta.snapshot, g)
    }
    const chosen = [...groups.values()].sort((a, b) => b.donors.length - a.donors.length || b.meta.round - a.meta.round)[0]
    const { meta } = chosen
    const total = partCount(meta.bytes)
    for (const key of partial.keys()) if (key !== meta.snapshot) partial.delete(key)
    const state = partial.get(meta.snapshot) ?? { bytes: new Uint8Array(meta.bytes), have: new Set<number>() }
    partial.set(meta.snapshot, state)
    const { bytes, have } = state
    const queue: number[] = []
    for (let i = 0; i < total; i++) if (!have.has(i)) queue.push(i)
    const used = new Set<string>()
    let failures = 0
    const worker = async (donor: DonorSession): Promise<void> => {
      while (queue.length > 0) {
        if (opts.signal?.aborted === true) throw new StateSyncError('state sync cancelled')
        const index = queue.shift()!
        try {
          const part = await donor.part(meta.snapshot, index)
          const start = index * PART_BYTES
          const expected = Math.min(PART_BYTES, meta.bytes - start)
          if (part.byteLength !== expected) throw new InvalidMessageError(`part ${index} of ${part.byteLength} bytes, expected ${expected}`)
          bytes.set(part, start)
          have.add(index)
          used.add(donor.peer)
          opts.onProgress?.(have.size, total)
        } catch (err) {
          queue.push(index)
          failures += 1
          opts.logger?.debug({ donor: donor.peer, index, err: (err as Error).message }, 'state part failed; another donor will serve it')
          return // this donor is done for; the others take over its parts
        }
      }
    }
    await Promise.all(chosen.donors.map(worker))
    if (have.size < total) throw new StateSyncError(`fetched ${have.size} of ${total} parts (${failures} failures); the fetch can be resumed`)
    const sha = createHash('sha256').update(bytes).digest('hex')
    partial.delete(meta.snapshot)
    if (sha !== meta.snapshot) throw new StateSyncError('the fetched state does not match the hash the donors announced')
    return { checkpoint: decodeCheckpoint(bytes), meta, donorsUsed: [...used], bytes: meta.bytes, ms: performance.now() - started }
  } finally {
    for (const s of sessions) void s.close()
  }
}
