/**
 * Catching up: whether this peer's state lags the swarm's, and fetching and
 * adopting the winning state when it does (docs/rounds.md, "Partitions").
 * Donors are the live members whose state wins over this peer's
 * (`winningDonors`: by group, never by round alone); a peer left out of a
 * round by members of its own rank takes theirs.
 *
 * @example
 * const catchUp = new CatchUp({ network, members: () => manifest.members(), live: () => manifest.live(), trainer, rounds, stopping: () => false, logger })
 * rounds.on('behind', round => { catchUp.heardRound(round) })
 * if (catchUp.othersAhead().length > 0) await catchUp.run('behind the swarm at start')
 */
import type { Logger } from 'pino'
import type { MemberValue } from '../../protocols/manifest/index.ts'
import type { Network } from '../network/index.ts'
import { compareRank, rankOf } from '../rounds/index.ts'
import type { Group, GroupRank } from '../rounds/index.ts'
import type { Checkpoint } from '../trainer/checkpoint.ts'
import { winningDonors } from './donors.ts'
import type { Candidate } from './donors.ts'
import { fetchState } from './index.ts'

/** How many state fetches status keeps. */
const SYNCS_KEPT = 20

/** One fetch of the swarm's state (joins, catch-ups), as status shows it. */
export interface SyncRecord {
  at: number
  round: number
  bytes: number
  ms: number
  donors: number
  /** The donors used (always set by a peer; optional for status readers, as added after the first fields). */
  from?: string[]
  /** False when the state fetched ranked below this peer's by the time it arrived (kept its own). */
  adopted?: boolean
}

/** The training state catching up reads and replaces. */
export interface CatchUpTrainer {
  readonly jobId: string
  readonly progress: { round: number, group?: Group }
  adopt: (checkpoint: Checkpoint) => Promise<void>
}

/** The rounds' view of this peer's state, set again after an adoption. */
export interface CatchUpRounds {
  setRound: (round: number) => void
  setGroup: (group: Group | null) => void
  clearPartition: () => void
}

export interface CatchUpComponents {
  network: Network
  /** The swarm's members as the manifest knows them (their heartbeats publish their group and round). */
  members: () => ReadonlyMap<string, Pick<MemberValue, 'group' | 'round'>>
  /** Members live now (this peer among them). */
  live: () => string[]
  trainer: CatchUpTrainer
  rounds: CatchUpRounds
  /** True once a stop was asked: no more catching up. */
  stopping: () => boolean
  logger: Logger
}

export class CatchUp {
  private readonly components: CatchUpComponents
  private lagging = false
  private readonly fetched: SyncRecord[] = []

  constructor (components: CatchUpComponents) {
    this.components = components
  }

  /** Set when others are at a later round: the next step fetches the swarm's state first. */
  get behind (): boolean {
    return this.lagging
  }

  /** The last fetches of the swarm's state, oldest first. */
  get syncs (): readonly SyncRecord[] {
    return this.fetched
  }

  /** The rounds heard of a round under way elsewhere: behind if it is later than this peer's. */
  heardRound (round: number): void {
    if (round > this.components.trainer.progress.round) this.lagging = true
  }

  /** This peer's state, ranked as its heartbeat publishes it (docs/rounds.md, "Partitions"). */
  private myRank (): GroupRank {
    const p = this.components.trainer.progress
    return rankOf(p.group ?? null, p.round)
  }

  /** Live members other than this peer, with the rank of their state as their heartbeats publish it. */
  private candidates (): Candidate[] {
    const self = this.components.network.peerId
    const live = new Set(this.components.live())
    return [...this.components.members()]
      .filter(([peer]) => peer !== self && live.has(peer))
      .map(([peer, m]) => ({ peer, rank: { epoch: m.group?.epoch ?? 0, size: m.group?.size ?? 0, lead: m.group?.lead ?? '', round: m.round ?? 0 } }))
  }

  /** Live members whose state wins over this peer's (by group, never by round alone), by the manifest's heartbeats. */
  othersAhead (): string[] {
    return winningDonors(this.myRank(), this.candidates())
  }

  /**
   * Fetches the swarm's state from the members ahead (all of them in parallel) and adopts it. With
   * `fallback` (a peer left out of a round), members that rank as this peer does are donors too, never a
   * lower rank's; without (no quorum of its group), only a state that wins is fetched. None: nothing to do.
   * `signal` cancels the fetch (the trainer machine stopped).
   */
  async run (why: string, fallback = true, signal?: AbortSignal): Promise<void> {
    const { network, trainer, rounds, logger: log } = this.components
    if (this.components.stopping()) return
    let donors = this.othersAhead()
    if (donors.length === 0 && fallback) donors = this.candidates().filter(c => compareRank(c.rank, this.myRank()) >= 0).map(c => c.peer)
    if (donors.length === 0) return
    log.info({ why, donors: donors.length, round: trainer.progress.round }, 'fetching the swarm\'s state')
    const result = await fetchState({ network, donors, signal, logger: log })
    if (result.checkpoint.jobId !== trainer.jobId) throw new Error(`donors sent state of job ${result.checkpoint.jobId}`)
    const theirs = rankOf(result.checkpoint.progress.group ?? null, result.checkpoint.progress.round)
    const before = this.myRank()
    const adopted = compareRank(theirs, this.myRank()) >= 0
    if (adopted) {
      await trainer.adopt(result.checkpoint)
      rounds.setRound(trainer.progress.round)
      rounds.setGroup(trainer.progress.group ?? null)
      // the winning side's state: this peer is rejoining, no longer cut off
      if (compareRank(theirs, before) > 0) rounds.clearPartition()
    }
    this.lagging = false
    this.fetched.push({ at: Date.now(), round: result.meta.round, bytes: result.bytes, ms: Math.round(result.ms), donors: result.donorsUsed.length, from: result.donorsUsed, adopted })
    if (this.fetched.length > SYNCS_KEPT) this.fetched.shift()
    log.info({ round: result.meta.round, bytes: result.bytes, ms: Math.round(result.ms), donors: result.donorsUsed.length }, 'state synced')
  }

  /** A joiner, or a peer restarted behind the swarm, takes the swarm's state before it trains. */
  async atStart (): Promise<void> {
    if (this.othersAhead().length === 0) return
    try {
      await this.run('behind the swarm at start')
    } catch (err) {
      // the members it remembers may be gone: train on; a later round finds it behind again if it is
      this.components.logger.warn({ err: (err as Error).message }, 'could not fetch the swarm\'s state at start')
    }
  }
}
