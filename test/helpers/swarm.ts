/** A local swarm of real `peer start` processes on 127.0.0.1, for multi-peer tests. */
import { join } from 'node:path'
import { ApiClient } from '../../node/api/client.ts'
import { joinTokenOf } from '../../node/security/index.ts'
import { runPeer, spawnPeer, tempDir, waitFor } from './peer-process.ts'
import type { PeerChild } from './peer-process.ts'

export interface StatusJson {
  peerId: string
  addresses: string[]
  state: string
  pid: number
  error: string | null
  peers: Array<{ peerId: string }>
  members: Array<{ peerId: string, state: string, live: boolean, shards: number, step: number | null }>
  job: { id: string, epochs: number, shards: number, dataset: string } | null
  shards: { total: number, mine: string[], unowned: number, owners: Record<string, string | null> }
  manifest: { deltasReceived: number, deltasRejected: number, syncs: number, syncsFailed: number } | null
  ring?: { round: number, members: string[], state: string, phase?: string | null, completed: number, aborted: number, fastRounds?: number, agreedRounds?: number, group?: { epoch: number, members: string[] } | null, events: Array<{ kind: string, round: number, detail: string, culprit?: string }>, timing?: { rounds: number, p50Ms: number, p90Ms: number, p99Ms: number, meanMs: number, ringP50Ms: number, overheadP50Ms: number } | null }
  partition?: { since: number, reachable: number, needed: number } | null
  syncs: Array<{ at?: number, round: number, bytes: number, ms: number, donors: number, from?: string[], adopted?: boolean }>
  training: { step: number, epoch: number, samples?: number, weightsHash: string, accuracy: number | null, hashes?: Array<{ round: number, hash: string }>, data: { epoch: number, rowsDone: number, rowsLeft: number, reading: number, contested: number, overTaken: number } } | null
  network?: { reconnect: { attempts: number, reconnects: number, pending: Array<{ peerId: string, attempt: number, nextAttemptAt: number | null }> } | null } | null
}

/**
 * What `peer status --json` prints for a data dir, or undefined while no peer answers there. Here it is read in
 * this process, through the control API's client (what the CLI prints is `JSON.stringify` of the same answer):
 * a test polling 3 peers every few hundred ms through the CLI spent a process start (~0.5 s of CPU) per poll.
 * With `prefix` (a network namespace: `ip netns exec NS`) the CLI runs through it, since only it can reach there.
 * test/cli.test.ts runs the CLI's own `peer status`.
 */
export async function statusOf (dataDir: string, prefix?: string[], timeoutMs = STATUS_TIMEOUT_MS): Promise<StatusJson | undefined> {
  if (prefix !== undefined && prefix.length > 0) {
    const r = await runPeer(['status', '--json', '--data-dir', dataDir], { timeoutMs, prefix })
    if (r.code !== 0) return undefined
    return JSON.parse(r.stdout) as StatusJson
  }
  try {
    return await (await ApiClient.fromDataDir(dataDir)).status(AbortSignal.timeout(timeoutMs)) as unknown as StatusJson
  } catch {
    return undefined
  }
}

/** How long one status request may take by default (a peer busy in a long synchronous step answers late). */
const STATUS_TIMEOUT_MS = 20_000

/** Options every test peer gets: loopback, a free port, no mDNS (tests run side by side). */
export const LOCAL = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']

/**
 * Where a peer runs, when not on this host's loopback: a command prefix that
 * runs it (`ip netns exec NS`), the address it listens on, and how to read its
 * status from here (default: `peer status` through the prefix).
 */
export interface Placement {
  prefix: string[]
  listen: string
  status?: (dataDir: string) => Promise<StatusJson | undefined>
}

export class LocalSwarm {
  readonly root: string
  readonly peers: Array<{ name: string, dataDir: string, proc: PeerChild }> = []
  private readonly removeRoot: () => Promise<void>
  private readonly place: ((name: string) => Placement) | null

  private constructor (root: string, remove: () => Promise<void>, place: ((name: string) => Placement) | null) {
    this.root = root
    this.removeRoot = remove
    this.place = place
  }

  /** With `place`, each peer runs where it says (e.g. a network namespace of test/helpers/netlab.ts). */
  static async create (opts: { place?: (name: string) => Placement } = {}): Promise<LocalSwarm> {
    const dir = await tempDir('peer-swarm-')
    return new LocalSwarm(dir.path, dir.remove, opts.place ?? null)
  }

  dataDir (name: string): string {
    return join(this.root, name)
  }

  /** Starts a peer; with `joinVia`, joins through that peer's first address. */
  async start (name: string, args: string[], joinVia?: string): Promise<PeerChild> {
    const extra: string[] = []
    if (joinVia !== undefined) extra.push(...await this.joinArgs(joinVia))
    const place = this.place?.(name)
    const network = place === undefined ? LOCAL : ['--listen', place.listen, '--no-mdns']
    const proc = spawnPeer(['start', '--data-dir', this.dataDir(name), ...network, ...extra, ...args], { prefix: place?.prefix })
    const existing = this.peers.findIndex(p => p.name === name)
    if (existing >= 0) this.peers.splice(existing, 1)
    this.peers.push({ name, dataDir: this.dataDir(name), proc })
    return proc
  }

  proc (name: string): PeerChild {
    const p = this.peers.find(x => x.name === name)
    if (p === undefined) throw new Error(`no peer ${name}`)
    return p.proc
  }

  /** The peer's first listen address (with /p2p/), once it has one. */
  async address (name: string): Promise<string> {
    const s = await waitFor(`${name} to listen`, async () => {
      const st = await this.status(name)
      return st !== undefined && st.addresses.length > 0 && st.peerId !== null ? st : undefined
    })
    return s.addresses[0]
  }

  /** How to join through a running peer: its join token (private swarm), or --open and its address. */
  async joinArgs (name: string): Promise<string[]> {
    const address = await this.address(name)
    const token = await joinTokenOf(this.dataDir(name), [address])
    return token !== null ? ['--join', token] : ['--open', '--join', address]
  }

  async status (name: string): Promise<StatusJson | undefined> {
    const place = this.place?.(name)
    if (place?.status !== undefined) return await place.status(this.dataDir(name))
    return await statusOf(this.dataDir(name), place?.prefix)
  }

  async statuses (names: string[]): Promise<StatusJson[] | undefined> {
    const all = await Promise.all(names.map(async n => await this.status(n)))
    return all.every(s => s !== undefined) ? all as StatusJson[] : undefined
  }

  async stopAll (): Promise<void> {
    for (const p of this.peers) p.proc.child.kill('SIGKILL')
    await Promise.all(this.peers.map(async p => await p.proc.exited(10_000).catch(() => {})))
    await this.removeRoot()
  }
}

/** True when every peer sees the same complete assignment of shards to the given live peers. */
export function assignmentAgreed (statuses: StatusJson[], live: string[]): boolean {
  const canonical = (o: Record<string, string | null>): string => JSON.stringify(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)))
  const first = canonical(statuses[0].shards.owners)
  if (!statuses.every(s => canonical(s.shards.owners) === first)) return false
  const owners = Object.values(statuses[0].shards.owners)
  if (owners.length !== statuses[0].shards.total || owners.length === 0) return false
  return owners.every(o => o !== null && live.includes(o))
}
