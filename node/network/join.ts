/**
 * Joining a swarm: which job this peer trains, reaching the swarm through
 * the `--join` addresses, waiting for `--min-peers` members, and opening
 * connections to a round's members. A peer given
 * --join adopts the swarm's job (and refuses to train another); a peer
 * without one trains the job it was asked for, else the one its data dir
 * holds, else the default job.
 *
 * @example
 * const { job, jobId, joined } = await joinSwarm({ dial: (a, s) => network.dial(a, s), manifest }, { dataDir, join, joinTimeoutMs, asked, stored })
 * await waitForPeers({ live: () => manifest.live() }, { minPeers: 3, onWaiting: w => console.log(w.live, w.needed) })
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { jobId as computeJobId, parseJob } from '../../protocols/job/index.ts'
import type { Job, JobInput } from '../../protocols/job/index.ts'
import { JobConflictError, JoinFailedError } from './errors.ts'

/** Pause between rounds of dialling the --join peers. */
const JOIN_RETRY_MS = 1000
/** How often a peer waiting for --min-peers looks again. */
const PEER_WAIT_POLL_MS = 250
/** How long opening a connection to a round member may take. */
const CONNECT_TIMEOUT_MS = 3000

/** A job id another member reported while syncing manifests, other than this peer's. */
export interface JobConflict {
  peer: string
  jobId: string | null
}

/** The parts of the manifest joining uses: the job it holds, a whole-state sync with a peer, and the conflicts syncs report. */
export interface JoinManifest {
  /** The job this peer trains, as it offers it in syncs (set here before the syncs, so that a conflict is seen). */
  jobId: string | null
  job: () => Job | undefined
  syncWith: (peer: string) => Promise<unknown>
  on: (event: 'job.conflict', listener: (c: JobConflict) => void) => unknown
  off: (event: 'job.conflict', listener: (c: JobConflict) => void) => unknown
}

export interface JoinComponents {
  /** Dials a multiaddr (with /p2p/<id>); resolves to the peer id reached. */
  dial: (address: string, signal: AbortSignal) => Promise<string>
  manifest: JoinManifest
}

export interface JoinInit {
  /** The data dir, for the messages of a conflict. */
  dataDir: string
  /** Multiaddrs (with /p2p/<id>) of swarm peers to join through; empty: start a swarm. */
  join: string[]
  /** How long to keep trying the --join peers. */
  joinTimeoutMs: number
  /** The job asked for (flags or file), if any. */
  asked?: JobInput
  /** The job the data dir holds, if any (unparsed, as stored). */
  stored?: unknown
}

export interface Joined {
  job: Job
  jobId: string
  /** Whether the job came from the swarm reached through --join. */
  joined: boolean
}

/**
 * Resolves the job this peer trains, and with --join reaches the swarm and
 * takes its job. Throws JobConflictError when the job asked for is not the
 * data dir's or the swarm's, JoinFailedError when no --join peer answers (or
 * none has a job). Leaves `manifest.jobId` set to the job's id.
 */
export async function joinSwarm (components: JoinComponents, init: JoinInit): Promise<Joined> {
  const { manifest } = components
  const storedRaw = init.stored ?? manifest.job()
  const stored = storedRaw !== undefined ? parseJob(storedRaw) : undefined
  const asked = init.asked !== undefined ? parseJob(init.asked) : undefined
  if (asked !== undefined && stored !== undefined && computeJobId(stored) !== computeJobId(asked)) {
    throw new JobConflictError(`data dir ${init.dataDir} holds job ${computeJobId(stored)} (${describeJob(stored)}), not the job asked for ${computeJobId(asked)} (${describeJob(asked)}); start without job options to resume it, or use another --data-dir`)
  }
  const mine = asked ?? stored
  if (mine !== undefined) manifest.jobId = computeJobId(mine)

  let swarmJob: Job | undefined
  if (init.join.length > 0) {
    const conflicts: JobConflict[] = []
    const onConflict = (c: JobConflict): void => { conflicts.push(c) }
    manifest.on('job.conflict', onConflict)
    try {
      const deadline = Date.now() + init.joinTimeoutMs
      const joined = await dialJoinPeers(components, init.join, init.joinTimeoutMs)
      // a peer reached may not answer the sync yet (still starting, or busy loading its backend): ask again until
      // the join timeout, as the dial does, rather than give up after one try
      for (;;) {
        for (const peer of joined) await manifest.syncWith(peer)
        if (conflicts.length > 0 || manifest.job() !== undefined || Date.now() >= deadline) break
        await sleep(JOIN_RETRY_MS)
      }
      if (conflicts.length > 0) {
        const c = conflicts[0]
        throw new JobConflictError(`the swarm at ${init.join.join(', ')} trains job ${c.jobId ?? '(none)'}, but this peer ${asked !== undefined ? 'was asked for' : 'holds'} job ${manifest.jobId ?? '-'}${mine !== undefined ? ` (${describeJob(mine)})` : ''}; start it without job options and on a fresh --data-dir to join that swarm`)
      }
      swarmJob = manifest.job()
      if (swarmJob === undefined) throw new JoinFailedError(`joined ${joined.join(', ')} but could not get the swarm's job from them`)
    } finally {
      manifest.off('job.conflict', onConflict)
    }
  }
  const job = swarmJob ?? mine ?? parseJob({})
  const jobId = computeJobId(job)
  manifest.jobId = jobId
  return { job, jobId, joined: swarmJob !== undefined }
}

/** Dials every --join address, retrying until the join timeout; returns the peers reached. */
export async function dialJoinPeers (components: Pick<JoinComponents, 'dial'>, addresses: string[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    const reached: string[] = []
    for (const addr of addresses) {
      try {
        reached.push(await components.dial(addr, AbortSignal.timeout(Math.max(1000, Math.min(5000, deadline - Date.now())))))
      } catch (err) {
        lastError = err
      }
    }
    if (reached.length > 0) return [...new Set(reached)]
    await sleep(JOIN_RETRY_MS)
  }
  throw new JoinFailedError(`could not reach any --join peer (${addresses.join(', ')}) within ${timeoutMs / 1000} s: ${(lastError as Error)?.message ?? 'no answer'}`)
}

export interface WaitForPeersInit {
  /** Members (this peer among them) that must be live. */
  minPeers: number
  /** Called with the count so far whenever it changes while waiting (first with the count at the start). */
  onWaiting?: (w: { live: number, needed: number }) => void
  signal?: AbortSignal
}

/** With --min-peers N, training starts once N members are live (as torchrun waits for its nodes). */
export async function waitForPeers (components: { live: () => string[] }, init: WaitForPeersInit): Promise<void> {
  let last = -1
  while (components.live().length < init.minPeers) {
    const n = components.live().length
    if (n !== last) {
      last = n
      init.onWaiting?.({ live: n, needed: init.minPeers })
    }
    if (init.signal?.aborted === true) throw new Error('stopped while waiting for peers')
    await sleep(PEER_WAIT_POLL_MS)
  }
}

export interface ConnectComponents {
  /** The parts of the libp2p host used (Network's). */
  network: {
    isConnected: (peer: string) => boolean
    learnAddresses: (peer: string, addresses: string[]) => Promise<void>
    dial: (peer: string, signal?: AbortSignal) => Promise<string>
  }
  /** Where each member can be reached, as the manifest knows it. */
  members: () => ReadonlyMap<string, { addresses?: string[] }>
  logger: Logger
}

/** Opens connections to the peers not yet connected, with the addresses the manifest knows for them (a round's members, before its ring starts). */
export async function connectMembers (components: ConnectComponents, peers: string[]): Promise<void> {
  const { network, logger } = components
  const members = components.members()
  await Promise.all(peers.filter(p => !network.isConnected(p)).map(async p => {
    await network.learnAddresses(p, members.get(p)?.addresses ?? [])
    await network.dial(p, AbortSignal.timeout(CONNECT_TIMEOUT_MS)).catch(err => {
      logger.debug({ peer: p, err: (err as Error).message }, 'could not connect to a round member')
    })
  }))
}

function describeJob (job: Job): string {
  return `${job.dataset}/${job.model}, ${job.epochs} epochs, batch ${job.batchSize}`
}
