import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Job } from '../../protocols/job/index.ts'
import {
  InvalidMessageError, MAX_DELTA_BYTES, SYNC_PROTOCOL, SYNC_TIMEOUT_MS,
  decodeDelta, decodeSync, encodeDelta, encodeSync, manifestTopic
} from '../../protocols/manifest/index.ts'
import type { ClaimValue, HoldingValue, MemberValue, ShardInfo, WireEntry } from '../../protocols/manifest/index.ts'
import type { Network } from '../network/index.ts'
import { planClaims, unownedShards } from './claims.ts'
import { LwwMap } from './crdt.ts'
import type { Entry } from './crdt.ts'
import { HlcClock } from './hlc.ts'
import { readFrame, syncHandler } from './sync.ts'
import { writeFrames } from '../../protocols/common/index.ts'
import type { ProtocolHandler } from '../../protocols/common/index.ts'
import { DEFAULT_HEARTBEAT_MS, DEFAULT_MEMBER_TIMEOUT_MS } from './constants.ts'

/** The LevelDB sublevel the manifest persists into: key → { value, clock }. */
export interface ManifestStore {
  iterator: () => AsyncIterable<[string, unknown]>
  batch: (ops: Array<{ type: 'put', key: string, value: unknown }>) => Promise<void>
}

export interface ManifestComponents {
  network: Network
  store: ManifestStore
  logger: Logger
}

export interface ManifestInit {
  /** How often this peer writes its heartbeat and revisits its claims. */
  heartbeatMs?: number
  /** A member not heard from for this long is dead, and its shards are free. */
  memberTimeoutMs?: number
  /** The model step this peer is at, published with its heartbeat. */
  localStep?: () => number
  /** The round this peer is at, published with its heartbeat. */
  localRound?: () => number
  /** The group this peer last trained in, published with its heartbeat (a peer that catches up picks the winning state by it). */
  localGroup?: () => MemberValue['group']
  now?: () => number
}


/** Members dialled per heartbeat when not connected (bounds the work after a partition heals). */
const DIALS_PER_TICK = 4
/** How often a peer reconciles its whole manifest with a random member (gossip can drop a delta). */
const ANTI_ENTROPY_MS = 5000
/** Entries per delta: a claim or member entry is ~200 bytes, so 500 stay well under MAX_DELTA_BYTES. */
const ENTRIES_PER_DELTA = 500

/** Cuts a list of writes into deltas that each fit the size limit. */
export function splitForDeltas (entries: WireEntry[]): WireEntry[][] {
  const out: WireEntry[][] = []
  let batch: WireEntry[] = []
  let bytes = 0
  for (const e of entries) {
    const size = JSON.stringify(e).length + 1
    if (batch.length > 0 && (batch.length >= ENTRIES_PER_DELTA || bytes + size > MAX_DELTA_BYTES - 1024)) {
      out.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(e)
    bytes += size
  }
  if (batch.length > 0) out.push(batch)
  return out
}

export interface ManifestEvents {
  /** Entries that changed this replica (local or remote writes). */
  change: [Entry[]]
  /** A peer we synced with belongs to another job. */
  'job.conflict': [{ peer: string, jobId: string | null }]
}

export interface ManifestCounters {
  deltasReceived: number
  deltasRejected: number
  syncs: number
  syncsFailed: number
}

/**
 * This peer's replica of the manifest: the job, the data set's shards, who
 * owns each shard, and who is alive. Persists every accepted write, gossips
 * its own writes, reconciles whole states with each newly connected peer, and
 * on every tick renews its membership and its claims.
 */
export class Manifest extends EventEmitter<ManifestEvents> {
  readonly state = new LwwMap()
  readonly counters: ManifestCounters = { deltasReceived: 0, deltasRejected: 0, syncs: 0, syncsFailed: 0 }
  private readonly components: ManifestComponents
  private readonly heartbeatMs: number
  private readonly memberTimeoutMs: number
  private readonly localStep: () => number
  private readonly localRound: () => number
  private readonly localGroup: () => MemberValue['group']
  private readonly now: () => number
  private readonly clock: HlcClock
  private readonly lastHeard = new Map<string, number>()
  private readonly me: string
  private topic: string | null = null
  /** The job this replica belongs to, once known (set by the peer before or by attachJob). */
  jobId: string | null = null
  private timer: NodeJS.Timeout | null = null
  private antiEntropyTimer: NodeJS.Timeout | null = null
  private pending: WireEntry[] = []
  private claimsNotBefore = 0
  private previousLive = new Set<string>()
  /** Recent membership changes as this peer saw them (for status). */
  readonly events: Array<{ at: number, kind: 'joined' | 'lost' | 'left', peer: string }> = []
  private stopped = false
  private readonly syncHandler: ProtocolHandler
  private readonly onConnect = (peer: string): void => { void this.syncWith(peer) }

  constructor (components: ManifestComponents, init: ManifestInit = {}) {
    super()
    this.components = components
    this.heartbeatMs = init.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
    this.memberTimeoutMs = init.memberTimeoutMs ?? DEFAULT_MEMBER_TIMEOUT_MS
    this.localStep = init.localStep ?? (() => 0)
    this.localRound = init.localRound ?? (() => 0)
    this.localGroup = init.localGroup ?? (() => undefined)
    this.now = init.now ?? Date.now
    this.me = components.network.peerId
    this.clock = new HlcClock(this.me, this.now)
    this.syncHandler = syncHandler(components.network.node, (stream, peer) => { void this.answerSync(stream, peer) })
  }

  /** Reads the persisted replica back from LevelDB (part of start). */
  private async load (): Promise<void> {
    const entries: Entry[] = []
    for await (const [key, stored] of this.components.store.iterator()) {
      const s = stored as { value: unknown, clock: Entry['clock'] }
      if (s?.clock === undefined) continue
      entries.push({ key, value: s.value ?? null, clock: s.clock })
    }
    for (const e of entries) this.clock.observe(e.clock)
    this.state.merge(entries)
    // members remembered from before are not live until they are heard from again
  }

  get isStarted (): boolean {
    return this.syncHandler.isStarted
  }

  /** Reads the persisted replica back, then answers sync requests and syncs with every peer that connects; a second start does nothing. */
  async start (): Promise<void> {
    if (this.syncHandler.isStarted) return
    await this.load()
    await this.syncHandler.start()
    this.components.network.on('peer.connected', this.onConnect)
  }

  /** Joins the job's gossip topic and starts heartbeats and claims; resolves after the first heartbeat. */
  async attachJob (jobId: string): Promise<void> {
    if (this.topic !== null) return
    this.jobId = jobId
    this.topic = manifestTopic(jobId)
    this.components.network.subscribe(this.topic, (from, data) => { this.onDelta(from, data) }, (from, data) => this.validateDelta(from, data))
    // a peer that remembers other members gives them a member timeout to be heard before it takes their shards
    const others = [...this.members().keys()].some(p => p !== this.me)
    this.claimsNotBefore = this.now() + (others ? this.memberTimeoutMs : 0)
    const first = this.tickAsync().catch(err => { this.components.logger.warn({ err }, 'manifest tick failed') })
    this.timer = setInterval(() => { this.tick() }, this.heartbeatMs)
    this.timer.unref()
    this.antiEntropyTimer = setInterval(() => { this.antiEntropy() }, ANTI_ENTROPY_MS)
    this.antiEntropyTimer.unref()
    await first
  }

  // ---- reading ----

  job (): Job | undefined {
    return this.state.get<Job>('job')
  }

  shards (): Map<string, ShardInfo> {
    return this.state.values<ShardInfo>('shards/')
  }

  shardIds (): string[] {
    return [...this.shards().keys()].sort()
  }

  owners (): Map<string, string | null> {
    const out = new Map<string, string | null>()
    for (const [shard, claim] of this.state.values<ClaimValue>('claims/')) out.set(shard, claim.owner)
    return out
  }

  members (): Map<string, MemberValue> {
    return this.state.values<MemberValue>('members/')
  }

  /** Members heard from within the timeout, this peer included; sorted. */
  live (): string[] {
    const t = this.now()
    const out = [this.me]
    for (const [peer, m] of this.members()) {
      if (peer === this.me || m.state !== 'alive') continue
      const heard = this.lastHeard.get(peer)
      if (heard !== undefined && t - heard <= this.memberTimeoutMs) out.push(peer)
    }
    return out.sort()
  }

  /** This peer's id. */
  get peerId (): string {
    return this.me
  }

  /** What each peer says it holds of the job's data set (`holders/<peer>`; dead members' records included). */
  holders (): Map<string, HoldingValue> {
    return this.state.values<HoldingValue>('holders/')
  }

  /** Says which shards this peer holds now (written, persisted and gossiped only when it changed). */
  async announceHolding (holding: HoldingValue): Promise<void> {
    const shards = [...new Set(holding.shards)].sort()
    const current = this.holders().get(this.me)
    if (current !== undefined && current.dataset === holding.dataset && current.shards.join() === shards.join()) return
    await this.write(`holders/${this.me}`, { dataset: holding.dataset, shards } satisfies HoldingValue)
    await this.flush()
  }

  mine (): string[] {
    const owners = this.owners()
    return this.shardIds().filter(s => owners.get(s) === this.me)
  }

  unowned (): string[] {
    return unownedShards(this.shardIds(), this.owners(), this.live())
  }

  // ---- writing ----

  /** Writes locally (persisted, gossiped on the next flush). */
  async write (key: string, value: unknown): Promise<void> {
    await this.writeMany([[key, value]])
  }

  /** Several writes at once: one LevelDB batch, one change event. */
  async writeMany (writes: Array<[string, unknown]>): Promise<void> {
    if (writes.length === 0) return
    const entries: WireEntry[] = writes.map(([key, value]) => ({ key, value, clock: this.clock.tick() }))
    const changed = this.state.merge(entries)
    await this.persist(changed)
    this.pending.push(...entries)
    if (changed.length > 0) this.emit('change', changed)
  }

  /** Creates the job and its shards if this replica has none (the first peer of a swarm). */
  async createJob (job: Job, shards: Map<string, ShardInfo>): Promise<void> {
    if (this.job() !== undefined) return
    await this.writeMany([['job', job], ...[...shards].map(([id, info]): [string, unknown] => [`shards/${id}`, info])])
    await this.flush()
  }

  /** Sends the writes made since the last flush, as deltas under the size limit. */
  async flush (): Promise<void> {
    if (this.pending.length === 0 || this.topic === null) return
    const entries = this.pending
    this.pending = []
    for (const batch of splitForDeltas(entries)) {
      try {
        await this.components.network.publish(this.topic, encodeDelta({ entries: batch }))
      } catch (err) {
        this.components.logger.debug({ err: (err as Error).message }, 'publishing a delta failed (peers catch up on the next sync)')
      }
    }
  }

  /** Anti-entropy: now and then, reconcile the whole manifest with one random member, repairing any lost delta. */
  private antiEntropy (): void {
    const peers = this.components.network.connectedPeers().map(p => p.peerId).filter(p => this.members().has(p))
    if (peers.length === 0) return
    void this.syncWith(peers[Math.floor(Math.random() * peers.length)])
  }

  /** One heartbeat: renew membership, mark the silent dead, claim or release shards. */
  private tick (): void {
    if (this.stopped) return
    void this.tickAsync().catch(err => { this.components.logger.warn({ err }, 'manifest tick failed') })
  }

  private async tickAsync (): Promise<void> {
    const { network } = this.components
    if (this.leaving) return
    await this.write(`members/${this.me}`, {
      state: 'alive',
      addresses: network.addresses(),
      heartbeat: this.now(),
      ...this.progressFields()
    } satisfies MemberValue)
    const t = this.now()
    for (const [peer, m] of this.members()) {
      if (peer === this.me || m.state !== 'alive') continue
      const heard = this.lastHeard.get(peer) ?? t
      if (!this.lastHeard.has(peer)) this.lastHeard.set(peer, t)
      if (t - heard > this.memberTimeoutMs) {
        this.components.logger.info({ peer }, 'member silent past the timeout: marked dead')
        await this.write(`members/${peer}`, { ...m, state: 'dead' } satisfies MemberValue)
      }
    }
    this.noteMembershipChanges()
    const shards = this.shardIds()
    const heardAnyone = this.counters.syncs > 0 || this.lastHeard.size > 0
    if (shards.length > 0 && (this.now() >= this.claimsNotBefore || heardAnyone)) {
      const plan = planClaims({ me: this.me, shards, owners: this.owners(), live: this.live(), held: new Set(this.holders().get(this.me)?.shards ?? []) })
      await this.writeMany([
        ...plan.release.map((s): [string, unknown] => [`claims/${s}`, { owner: null } satisfies ClaimValue]),
        ...plan.claim.map((s): [string, unknown] => [`claims/${s}`, { owner: this.me } satisfies ClaimValue])
      ])
    }
    await this.flush()
    // keep addresses of members in the peer store, and connections open to a few of those not connected,
    // so that rings and syncs reach members directly
    let dials = 0
    for (const [peer, m] of this.members()) {
      if (peer === this.me || m.state !== 'alive' || network.isConnected(peer)) continue
      await network.learnAddresses(peer, m.addresses)
      if (dials++ < DIALS_PER_TICK) network.dial(peer, AbortSignal.timeout(this.heartbeatMs * 3)).catch(() => {})
    }
  }

  private noteMembershipChanges (): void {
    const live = new Set(this.live())
    const members = this.members()
    for (const p of live) if (!this.previousLive.has(p) && p !== this.me) this.pushEvent('joined', p)
    for (const p of this.previousLive) {
      if (!live.has(p)) this.pushEvent(members.get(p)?.state === 'left' ? 'left' : 'lost', p)
    }
    this.previousLive = live
  }

  private pushEvent (kind: 'joined' | 'lost' | 'left', peer: string): void {
    this.events.push({ at: this.now(), kind, peer })
    if (this.events.length > 50) this.events.shift()
    this.components.logger.info({ peer, kind }, `member ${kind}`)
  }

  /** Says at once that this peer is leaving (its rounds stop waiting for it); its shards are released by leave(). */
  async announceLeaving (): Promise<void> {
    if (this.topic === null || this.stopped) return
    const m = this.members().get(this.me)
    await this.write(`members/${this.me}`, { state: 'left', addresses: m?.addresses ?? [], heartbeat: this.now(), ...this.progressFields() } satisfies MemberValue)
    this.leaving = true
    await this.flush()
  }

  private leaving = false

  /** Where this peer's training stands, as its member entry publishes it. */
  private progressFields (): Pick<MemberValue, 'step' | 'round' | 'group'> {
    const group = this.localGroup()
    return { step: this.localStep(), round: this.localRound(), ...(group !== undefined ? { group } : {}) }
  }

  /** Leaves cleanly: releases this peer's shards at once and says so. */
  async leave (): Promise<void> {
    if (this.topic !== null && !this.stopped) {
      await this.writeMany(this.mine().map((s): [string, unknown] => [`claims/${s}`, { owner: null } satisfies ClaimValue]))
      const m = this.members().get(this.me)
      await this.write(`members/${this.me}`, { state: 'left', addresses: m?.addresses ?? [], heartbeat: this.now(), ...this.progressFields() } satisfies MemberValue)
      await this.flush()
    }
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    if (this.antiEntropyTimer !== null) clearInterval(this.antiEntropyTimer)
    this.timer = null
    this.antiEntropyTimer = null
    const { network } = this.components
    network.off('peer.connected', this.onConnect)
    if (this.topic !== null) network.unsubscribe(this.topic)
    await this.syncHandler.stop()
  }

  // ---- remote writes ----

  private validateDelta (from: string, data: Uint8Array): boolean {
    try {
      const { entries } = decodeDelta(data)
      // over gossip a peer only publishes its own writes
      if (entries.some(e => e.clock.peer !== from)) throw new InvalidMessageError('delta carries writes of another peer')
      return true
    } catch (err) {
      this.counters.deltasRejected += 1
      this.components.logger.debug({ from, err: (err as Error).message }, 'rejected a manifest delta')
      return false
    }
  }

  private onDelta (from: string, data: Uint8Array): void {
    this.counters.deltasReceived += 1
    const { entries } = decodeDelta(data)
    this.lastHeard.set(from, this.now())
    void this.mergeRemote(entries)
  }

  private async mergeRemote (entries: WireEntry[]): Promise<void> {
    const job = this.job()
    const accepted = entries.filter(e => {
      // a replica never changes its job once it has one
      if (e.key === 'job' && job !== undefined) return false
      return true
    })
    for (const e of accepted) this.clock.observe(e.clock)
    const changed = this.state.merge(accepted)
    const t = this.now()
    for (const e of changed) {
      if (e.key.startsWith('members/')) {
        const peer = e.key.slice('members/'.length)
        if (e.clock.peer === peer || !this.lastHeard.has(peer)) this.lastHeard.set(peer, t)
      }
    }
    await this.persist(changed)
    if (changed.length > 0) this.emit('change', changed)
  }

  private async persist (entries: Entry[]): Promise<void> {
    if (entries.length === 0) return
    await this.components.store.batch(entries.map(e => ({ type: 'put' as const, key: e.key, value: { value: e.value, clock: e.clock } })))
  }

  private syncMessage (): Uint8Array {
    return encodeSync({ jobId: this.job() === undefined ? null : this.jobId, entries: this.state.entries() as WireEntry[] })
  }

  /** Exchanges whole states with a peer; returns the peer's job id (null if it has none), or undefined on failure. */
  async syncWith (peer: string, signal: AbortSignal = AbortSignal.timeout(SYNC_TIMEOUT_MS)): Promise<string | null | undefined> {
    if (this.stopped) return undefined
    const { network, logger } = this.components
    try {
      const stream = await network.node.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL, { signal })
      await writeFrames(stream, this.syncMessage())
      const bytes = await readFrame(stream)
      await stream.close().catch(() => {})
      if (bytes === null) throw new InvalidMessageError('peer closed the sync without answering')
      const remote = decodeSync(bytes)
      await this.acceptSync(peer, remote)
      this.counters.syncs += 1
      return remote.jobId
    } catch (err) {
      this.counters.syncsFailed += 1
      logger.debug({ peer, err: (err as Error).message }, 'manifest sync failed')
      return undefined
    }
  }

  private async answerSync (stream: Stream, peer: string): Promise<void> {
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    const onAbort = (): void => { stream.abort(new Error('sync timed out')) }
    signal.addEventListener('abort', onAbort)
    try {
      const bytes = await readFrame(stream)
      if (bytes === null) throw new InvalidMessageError('empty sync request')
      const remote = decodeSync(bytes)
      await writeFrames(stream, this.syncMessage())
      await this.acceptSync(peer, remote)
      this.counters.syncs += 1
    } catch (err) {
      this.counters.syncsFailed += 1
      this.components.logger.debug({ peer, err: (err as Error).message }, 'answering a manifest sync failed')
      stream.abort(err as Error)
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  private async acceptSync (peer: string, remote: { jobId: string | null, entries: WireEntry[] }): Promise<void> {
    const mine = this.jobId
    if (mine !== null && remote.jobId !== null && remote.jobId !== mine) {
      this.emit('job.conflict', { peer, jobId: remote.jobId })
      return
    }
    if (remote.jobId === null && mine !== null) {
      // the other side has nothing yet: it takes ours; we take only its membership
      await this.mergeRemote(remote.entries.filter(e => e.key.startsWith('members/')))
      return
    }
    await this.mergeRemote(remote.entries)
  }
}
