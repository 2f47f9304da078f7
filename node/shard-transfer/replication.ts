/**
 * Keeps an imported data set's shards where the placement rules
 * (placement.ts) say: this peer fetches the shards it owns and those it keeps
 * as a replica, says what it holds in the manifest (`holders/<peer>`), and
 * drops a shard it no longer keeps once R other live keepers hold it (after a
 * grace, so that claims settling after a join do not make it drop and fetch
 * again). One fetch at a time, from a live holder of the shard; a shard no one
 * could send is retried after a backoff, listed in the status as unavailable
 * (with how long), and logged as a warning once that lasts UNAVAILABLE_WARN_MS.
 *
 * The trainer's side: `isLocal(id)` says whether a shard's file is here,
 * `ensureShard(id)` resolves once it is (fetching it first), and the
 * `shard.local` event fires for each shard that arrived.
 */
import { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { setTimeout as sleep, setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { HoldingValue } from '../../protocols/manifest/index.ts'
import { datasetsRoot, shardPath } from '../data/imported/index.ts'
import type { DatasetDescription, ShardFileDescription } from '../data/imported/index.ts'
import { shardId } from '../data/shards.ts'
import { fetchShard } from './fetch.ts'
import type { ShardNode } from './fetch.ts'
import { liveHolders, planPlacement } from './placement.ts'
import type { Placement } from './placement.ts'

/** R when the job says nothing: two copies survive any one peer's loss. */
export const DEFAULT_REPLICAS = 2
/** How often the placement is revisited without a manifest change (a member's death shows as no change). */
const DEFAULT_INTERVAL_MS = 1000
/** A shard is dropped only after this long with no need for it here (claims settle within a few heartbeats after a join). */
const DEFAULT_DROP_AFTER_MS = 10_000
/** A shard no holder could send is tried again after this. */
const RETRY_MS = 2000
/** A shard wanted here that no live peer could send for this long is logged as a warning (a moment without sources is normal after a restart). */
const UNAVAILABLE_WARN_MS = 15_000
/** One shard file's transfer may take this long (a 64 MiB shard at 1 MB/s). */
const FETCH_TIMEOUT_MS = 60_000

/** What the service reads and writes of the manifest. */
export interface HolderManifest {
  readonly peerId: string
  shardIds: () => string[]
  owners: () => Map<string, string | null>
  live: () => string[]
  holders: () => Map<string, HoldingValue>
  announceHolding: (holding: HoldingValue) => Promise<void>
  on: (event: 'change', listener: () => void) => unknown
  off: (event: 'change', listener: () => void) => unknown
}

export interface ReplicationComponents {
  node: ShardNode
  manifest: HolderManifest
  logger?: Logger
}

export interface ReplicationInit {
  dataDir: string
  /** The job's data set (its description must be in the data dir). */
  description: DatasetDescription
  datasetId: string
  /** R, copies wanted of each shard (default DEFAULT_REPLICAS). */
  replicas?: number
  intervalMs?: number
  dropAfterMs?: number
}

/** Per data set, for `peer status` and `peer dataset ls`. */
export interface ReplicationStatus {
  dataset: string
  /** R. */
  replicas: number
  /** Training shards of the data set. */
  shards: number
  /** Training shards whose files are here. */
  held: number
  heldShards: string[]
  /** Shards this peer keeps (owns or replicates). */
  kept: number
  /** Live copies of each shard swarm-wide, as the holder records say. */
  copies: Record<string, number>
  /** Shards with fewer than R live copies. */
  belowReplicas: string[]
  /** Files fetched by this process (and their bytes), how often each shard was fetched and dropped: a shard is fetched again only after a drop. */
  fetched: number
  fetchedBytes: number
  fetches: Record<string, number>
  dropped: number
  drops: Record<string, number>
  /** The shard being fetched now. */
  fetching: string | null
  /**
   * Shards this peer wants (keeps, or the trainer waits for) that no live peer could send at the last try, with
   * how long that has lasted (ms): they are retried every few seconds, and training that needs one waits.
   */
  unavailable: Record<string, number>
}

export interface ReplicationEvents {
  /** A shard's file arrived (hash-checked). */
  'shard.local': [{ id: string, index: number }]
  'shard.dropped': [{ id: string, index: number }]
}

export class ReplicationService extends EventEmitter<ReplicationEvents> {
  private readonly components: ReplicationComponents
  private readonly dataDir: string
  private readonly description: DatasetDescription
  private readonly datasetId: string
  readonly replicas: number
  private readonly intervalMs: number
  private readonly dropAfterMs: number
  private readonly dir: string
  private readonly byId = new Map<string, ShardFileDescription>()
  private local = new Set<string>()
  private last: Placement | null = null
  private timer: NodeJS.Timeout | null = null
  private running = false
  private again = false
  private stopped = true
  private readonly abort = new AbortController()
  private readonly retryAt = new Map<string, number>()
  /** Shards wanted here that no live peer could send, since when (cleared when one arrives or is no longer wanted). */
  private readonly unavailableSince = new Map<string, number>()
  private readonly warnedUnavailable = new Set<string>()
  private readonly surplusSince = new Map<string, number>()
  private readonly urgent = new Set<string>()
  private readonly waiters = new Map<string, Array<{ resolve: () => void, reject: (err: Error) => void }>>()
  private fetching: string | null = null
  private readonly counters = { fetched: 0, fetchedBytes: 0, dropped: 0 }
  private readonly fetches = new Map<string, number>()
  private readonly drops = new Map<string, number>()
  private readonly onChange = (): void => { this.schedule() }

  constructor (components: ReplicationComponents, init: ReplicationInit) {
    super()
    this.components = components
    this.dataDir = init.dataDir
    this.description = init.description
    this.datasetId = init.datasetId
    this.replicas = init.replicas ?? DEFAULT_REPLICAS
    this.intervalMs = init.intervalMs ?? DEFAULT_INTERVAL_MS
    this.dropAfterMs = init.dropAfterMs ?? DEFAULT_DROP_AFTER_MS
    this.dir = join(datasetsRoot(this.dataDir), this.datasetId)
    init.description.shards.forEach((s, i) => this.byId.set(shardId(i), s))
  }

  get isStarted (): boolean {
    return !this.stopped
  }

  start (): void {
    if (!this.stopped) return
    this.stopped = false
    this.local = this.scan()
    this.components.manifest.on('change', this.onChange)
    this.timer = setInterval(() => { this.schedule() }, this.intervalMs)
    this.timer.unref()
    this.schedule()
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    this.components.manifest.off('change', this.onChange)
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.abort.abort(new Error('replication stopped'))
    for (const [, ws] of this.waiters) for (const w of ws) w.reject(new Error('replication stopped'))
    this.waiters.clear()
  }

  /** Whether this shard's file is here. */
  isLocal (id: string): boolean {
    return this.local.has(id)
  }

  /** The index of a shard id in the description, or undefined. */
  indexOf (id: string): number | undefined {
    return this.byId.get(id)?.index
  }

  /** Resolves once the shard's file is here, fetching it before anything else. */
  async ensureShard (id: string, signal?: AbortSignal): Promise<void> {
    if (!this.byId.has(id)) throw new RangeError(`no shard ${id} in data set ${this.datasetId}`)
    if (this.local.has(id)) return
    if (this.stopped) throw new Error('replication stopped')
    this.urgent.add(id)
    const done = new Promise<void>((resolve, reject) => {
      const list = this.waiters.get(id) ?? []
      list.push({ resolve, reject })
      this.waiters.set(id, list)
      signal?.addEventListener('abort', () => { reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }, { once: true })
    })
    this.schedule()
    await done
  }

  status (): ReplicationStatus {
    const plan = this.last
    const held = [...this.local].sort()
    return {
      dataset: this.datasetId,
      replicas: this.replicas,
      shards: this.byId.size,
      held: held.length,
      heldShards: held,
      kept: plan?.kept.length ?? 0,
      copies: Object.fromEntries(plan?.copies ?? []),
      belowReplicas: plan?.below ?? [],
      fetched: this.counters.fetched,
      fetchedBytes: this.counters.fetchedBytes,
      fetches: Object.fromEntries(this.fetches),
      dropped: this.counters.dropped,
      drops: Object.fromEntries(this.drops),
      fetching: this.fetching,
      unavailable: Object.fromEntries([...this.unavailableSince].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([id, since]) => [id, Date.now() - since]))
    }
  }

  /**
   * Shards held here and by no other live member: what the swarm loses if this peer goes now. Empty when this
   * peer is alone (there is no one to hand them to).
   */
  soleCopies (): string[] {
    const view = this.view()
    if (view.live.every(p => p === view.me)) return []
    const holders = liveHolders(view)
    return [...this.local].filter(id => [...(holders.get(id) ?? [])].every(p => p === view.me)).sort()
  }

  /**
   * Before this peer leaves (it has said so: the others no longer count it as live, and fetch what only it
   * holds): waits until every shard it holds is held by another live member too, or `timeoutMs` passed.
   * Returns the shards still held only here.
   */
  async handOff (timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs
    let sole = this.soleCopies()
    if (sole.length > 0) this.components.logger?.info({ shards: sole.length }, 'leaving: waiting for the other members to copy the shards only this peer holds')
    while (sole.length > 0 && Date.now() < deadline && !this.stopped) {
      await sleep(Math.min(this.intervalMs, Math.max(1, deadline - Date.now())))
      sole = this.soleCopies()
    }
    if (sole.length > 0) this.components.logger?.warn({ shards: sole }, 'leaving with shards no other live member holds yet')
    return sole
  }

  /** Runs a placement step now, or once the one under way ends. */
  private schedule (): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = true
    void (async () => {
      try {
        do {
          this.again = false
          // a turn for I/O between steps, whatever the manifest's writes resolve with
          await yieldToEventLoop()
          await this.step()
        } while (this.again && !this.stopped)
      } catch (err) {
        this.components.logger?.warn({ err: (err as Error).message }, 'replication step failed')
      } finally {
        this.running = false
      }
    })()
  }

  private scan (): Set<string> {
    const out = new Set<string>()
    for (const [id, s] of this.byId) if (existsSync(shardPath(this.dir, s))) out.add(id)
    return out
  }

  private view (): Parameters<typeof planPlacement>[0] {
    const m = this.components.manifest
    const holders = new Map<string, Set<string>>()
    for (const [peer, h] of m.holders()) if (h.dataset === this.datasetId) holders.set(peer, new Set(h.shards))
    return { me: m.peerId, shards: [...this.byId.keys()], owners: m.owners(), live: m.live(), holders, local: this.local, replicas: this.replicas }
  }

  private async announce (): Promise<void> {
    await this.components.manifest.announceHolding({ dataset: this.datasetId, shards: [...this.local].sort() })
  }

  private async step (): Promise<void> {
    // a file removed or restored by hand is noticed here
    this.local = this.scan()
    for (const id of this.local) this.settle(id)
    await this.announce()
    const view = this.view()
    const plan = planPlacement(view)
    this.last = plan
    const now = Date.now()
    // a shard no longer wanted here is no longer unavailable here
    const wanted = new Set([...this.urgent, ...plan.fetch])
    for (const id of [...this.unavailableSince.keys()]) {
      if (!wanted.has(id)) {
        this.unavailableSince.delete(id)
        this.warnedUnavailable.delete(id)
      }
    }
    const next = [...this.urgent, ...plan.fetch].find(id => !this.local.has(id) && (this.retryAt.get(id) ?? 0) <= now)
    if (next !== undefined && !this.stopped) {
      await this.fetch(next, view)
      // look again at once: the next shard, or drops the new copy allows
      this.again = true
      return
    }
    await this.dropSurplus(plan, now)
  }

  private async fetch (id: string, view: Parameters<typeof planPlacement>[0]): Promise<void> {
    const shard = this.byId.get(id)
    if (shard === undefined) return
    const log = this.components.logger
    const holders = [...(liveHolders(view).get(id) ?? [])].filter(p => p !== view.me)
    // members that say they hold it but are not live may still serve it (one leaving hands its shards off first)
    const gone = [...view.holders].filter(([p, h]) => p !== view.me && !holders.includes(p) && h.has(id)).map(([p]) => p)
    // spread the load over the holders; members that hold nothing are a last resort (an old record)
    const sources = [...shuffle(holders), ...shuffle(gone), ...shuffle(view.live.filter(p => p !== view.me && !holders.includes(p)))]
    this.fetching = id
    const tried: string[] = []
    try {
      for (const peer of sources) {
        if (this.stopped) return
        try {
          const r = await fetchShard(this.components.node, peer, shard.sha256, this.dir, AbortSignal.any([this.abort.signal, AbortSignal.timeout(FETCH_TIMEOUT_MS)]), { fileName: shard.file })
          this.local.add(id)
          this.counters.fetched += 1
          this.counters.fetchedBytes += r.bytes
          this.fetches.set(id, (this.fetches.get(id) ?? 0) + 1)
          this.retryAt.delete(id)
          log?.info({ shard: id, from: peer, bytes: r.bytes }, 'shard fetched')
          await this.announce()
          this.settle(id)
          return
        } catch (err) {
          tried.push(`${peer}: ${(err as Error).name}: ${(err as Error).message}`)
        }
      }
      const now = Date.now()
      this.retryAt.set(id, now + RETRY_MS)
      const since = this.unavailableSince.get(id) ?? now
      this.unavailableSince.set(id, since)
      const waited = this.urgent.has(id) ? 'training waits for it; ' : ''
      if (now - since >= UNAVAILABLE_WARN_MS && !this.warnedUnavailable.has(id)) {
        // said once per spell, and in the status (`unavailable`) and the metrics all along
        this.warnedUnavailable.add(id)
        log?.warn({ shard: id, forMs: now - since, tried }, `no live peer has sent shard ${id} for ${Math.round((now - since) / 1000)} s (${sources.length === 0 ? 'none holds it' : 'those holding it failed'}): ${waited}retrying every ${RETRY_MS / 1000} s`)
      } else if (sources.length === 0) {
        // no one to ask is normal for a moment after a restart, before the other members are heard from
        log?.debug({ shard: id }, 'no live peer to fetch a shard from yet')
      } else {
        log?.warn({ shard: id, tried }, 'no peer could send a shard: retrying later')
      }
    } finally {
      this.fetching = null
    }
  }

  /** A shard is here: wake whoever waits for it, and say so. */
  private settle (id: string): void {
    const index = this.byId.get(id)?.index
    if (index === undefined) return
    const wasUrgent = this.urgent.delete(id)
    this.unavailableSince.delete(id)
    this.warnedUnavailable.delete(id)
    const ws = this.waiters.get(id)
    this.waiters.delete(id)
    for (const w of ws ?? []) w.resolve()
    if (wasUrgent || ws !== undefined || this.fetching === id) this.emit('shard.local', { id, index })
  }

  private async dropSurplus (plan: Placement, now: number): Promise<void> {
    const surplus = new Set(plan.drop)
    for (const id of [...this.surplusSince.keys()]) if (!surplus.has(id)) this.surplusSince.delete(id)
    let dropped = false
    for (const id of plan.drop) {
      const since = this.surplusSince.get(id)
      if (since === undefined) {
        this.surplusSince.set(id, now)
        continue
      }
      if (now - since < this.dropAfterMs || this.urgent.has(id)) continue
      const shard = this.byId.get(id)
      if (shard === undefined) continue
      await rm(shardPath(this.dir, shard), { force: true })
      this.local.delete(id)
      this.surplusSince.delete(id)
      this.counters.dropped += 1
      this.drops.set(id, (this.drops.get(id) ?? 0) + 1)
      dropped = true
      this.components.logger?.info({ shard: id, copies: plan.copies.get(id) }, 'shard dropped: R other keepers hold it')
      this.emit('shard.dropped', { id, index: shard.index })
    }
    if (dropped) await this.announce()
  }
}

function shuffle<T> (xs: T[]): T[] {
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}
