/**
 * The peer's Prometheus metrics: training, ring, manifest and process
 * figures, read from the peer's status when scraped (nothing is computed on
 * the training path), plus per-round figures when the peer reports rounds,
 * plus libp2p's own metrics when the network was created with a registry.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { PeerStatus, RoundFigures } from '../peer/status.ts'

export interface OpsMetricsComponents {
  status: () => PeerStatus
  /** Swarm-wide samples trained since the job began (the trainer's progress). */
  samples: () => number | null
  /** Registries scraped along with ours (libp2p's). */
  extra?: () => Registry[]
}

/** The peer's states, each a series of `peer_state` (1 for the current one). */
const STATES = ['starting', 'joining', 'syncing', 'training', 'reducing', 'stopping', 'done', 'failed', 'stopped']

export class OpsMetrics {
  readonly registry = new Registry()
  private readonly components: OpsMetricsComponents
  /** The status every collector reads during one scrape (taken once per scrape). */
  private current: PeerStatus | null = null
  private readonly seenSyncs = new Set<number>()
  private syncCount = 0
  private syncBytes = 0
  private roundMetrics: { bytes: Counter, received: Counter, seconds: Histogram } | null = null

  constructor (components: OpsMetricsComponents) {
    this.components = components
    const r = this.registry
    collectDefaultMetrics({ register: r })
    // Prometheus names only counters `…_total` (`promtool check metrics`); prom-client's default metrics
    // include gauges so named (`nodejs_active_handles_total`, …), each the sum over the `type` label of the
    // gauge of the same name without the suffix (`nodejs_active_handles{type}`): drop them
    for (const m of r.getMetricsAsArray()) {
      if (m.name.endsWith('_total') && !(m instanceof Counter)) r.removeSingleMetric(m.name)
    }
    const self = this
    const s = (): PeerStatus | null => self.current
    // a gauge whose value is read from the scrape's status; no sample at all while the value is unknown
    // (a 0 would read as a real figure: an accuracy of 0 before the first evaluation)
    const gauge = (name: string, help: string, read: (st: PeerStatus) => number | null | undefined): void => {
      const g = new Gauge({ name, help, registers: [r] })
      const base = g.get.bind(g)
      g.get = async () => {
        const st = s()
        const v = st === null ? null : read(st)
        return { ...await base(), values: typeof v === 'number' && Number.isFinite(v) ? [{ value: v, labels: {} }] : [] }
      }
    }
    // a counter mirrored from a running total the peer keeps
    const total = (name: string, help: string, read: (st: PeerStatus) => number | null | undefined): void => {
      new Counter({
        name,
        help,
        registers: [r],
        collect () {
          const st = s()
          const v = st === null ? null : read(st)
          this.reset()
          if (typeof v === 'number' && Number.isFinite(v) && v > 0) this.inc(v)
        }
      })
    }

    new Gauge({
      name: 'peer_info',
      help: 'Identity of this peer: 1, with the peer id, job id and tensor backend as labels',
      labelNames: ['peer_id', 'job_id', 'backend'],
      registers: [r],
      collect () {
        this.reset()
        const st = s()
        if (st !== null) this.set({ peer_id: st.peerId ?? '', job_id: st.job?.id ?? '', backend: st.backend ?? '' }, 1)
      }
    })
    new Gauge({
      name: 'peer_state',
      help: 'The root actor\'s state: 1 for the current one, 0 for the others',
      labelNames: ['state'],
      registers: [r],
      collect () {
        this.reset()
        const st = s()
        for (const state of new Set([...STATES, st?.state ?? 'starting'])) this.set({ state }, st?.state === state ? 1 : 0)
      }
    })
    gauge('peer_uptime_seconds', 'Seconds since this peer started', st => st.uptimeSec)
    gauge('peer_connected_peers', 'Peers this peer has a connection to', st => st.peers.length)

    // training
    gauge('peer_training_step', 'Optimizer steps applied since the job began', st => st.training?.step)
    gauge('peer_training_epoch', 'Completed passes over the training set (swarm-wide)', st => st.training?.epoch)
    gauge('peer_training_epochs', 'Passes the job asks for', st => st.training?.epochs)
    gauge('peer_training_epoch_progress', 'Fraction of the current epoch done, 0..1', st => st.training?.epochProgress)
    gauge('peer_training_loss', 'Training loss, smoothed over recent steps', st => st.training?.loss)
    gauge('peer_training_samples_per_second', 'Samples per second this peer trained over the last seconds', st => st.training?.samplesPerSec)
    new Counter({
      name: 'peer_training_samples_total',
      help: 'Samples whose updates were applied since the job began (swarm-wide)',
      registers: [r],
      collect () {
        const v = self.components.samples()
        this.reset()
        if (v !== null && v > 0) this.inc(v)
      }
    })
    gauge('peer_test_accuracy', 'Accuracy on the held-out test split at the last evaluation, 0..1', st => st.training?.accuracy)
    gauge('peer_test_loss', 'Loss on the held-out test split at the last evaluation', st => st.training?.testLoss)

    // ring
    gauge('peer_ring_round', 'The round this peer is at', st => st.ring.round)
    gauge('peer_ring_members', 'Members of the last round', st => st.ring.last?.members ?? (st.ring.members.length > 0 ? st.ring.members.length : null))
    total('peer_ring_rounds_total', 'Rounds this peer completed since it started', st => st.ring.completed)
    total('peer_ring_rounds_aborted_total', 'Round attempts that aborted since this peer started', st => st.ring.aborted)
    gauge('peer_ring_last_round_seconds', 'Wall time of the last completed all-reduce', st => (st.ring.last === null ? null : st.ring.last.ms / 1000))
    gauge('peer_ring_last_round_bytes_sent', 'Bytes this peer sent to its successor in the last completed round', st => st.ring.last?.bytesSent)
    gauge('peer_ring_last_round_algbw_bytes_per_second', 'Vector bytes per second of the last completed round', st => st.ring.last?.algbw)

    // manifest
    gauge('peer_shards_owned', 'Shards this peer owns', st => st.shards.mine.length)
    gauge('peer_shards', 'Shards of the job', st => st.shards.total)
    gauge('peer_shards_unowned', 'Shards no live member owns', st => st.shards.unowned)
    // an imported data set's shards (none for a built-in one)
    gauge('peer_dataset_shards_held', 'Training shards of the imported data set whose files this peer holds', st => st.datasets?.[0]?.held)
    gauge('peer_dataset_shards_below_replicas', 'Shards of the imported data set with fewer than R live copies swarm-wide', st => st.datasets?.[0]?.belowReplicas.length)
    gauge('peer_dataset_shards_unavailable', 'Shards of the imported data set this peer wants that no live peer could send at the last try', st => st.datasets?.[0] !== undefined ? Object.keys(st.datasets[0].unavailable ?? {}).length : undefined)
    total('peer_dataset_shards_fetched_total', 'Shard files this peer fetched since it started', st => st.datasets?.[0]?.fetched)
    gauge('peer_members_live', 'Live members of the swarm (this peer included)', st => st.members.filter(m => m.live).length)
    new Gauge({
      name: 'peer_members',
      help: 'Members the manifest knows, by state',
      labelNames: ['state'],
      registers: [r],
      collect () {
        this.reset()
        const st = s()
        if (st === null) return
        const counts = new Map<string, number>()
        for (const m of st.members) {
          const state = m.live ? 'live' : m.state
          counts.set(state, (counts.get(state) ?? 0) + 1)
        }
        for (const [state, n] of counts) this.set({ state }, n)
      }
    })
    total('peer_manifest_deltas_received_total', 'Manifest deltas received over gossip', st => st.manifest?.deltasReceived)
    total('peer_manifest_deltas_rejected_total', 'Invalid manifest deltas rejected', st => st.manifest?.deltasRejected)
    total('peer_manifest_syncs_total', 'Full manifest reconciliations with another member', st => st.manifest?.syncs)
    total('peer_manifest_syncs_failed_total', 'Manifest reconciliations that failed', st => st.manifest?.syncsFailed)

    // state sync (the peer keeps its last 20: count each once)
    total('peer_state_syncs_total', 'Times this peer fetched the swarm\'s training state', () => self.syncCount)
    total('peer_state_sync_bytes_total', 'Bytes of training state fetched from the swarm', () => self.syncBytes)
  }

  /**
   * Feeds the per-round metrics (`peer_ring_bytes_sent_total`,
   * `peer_ring_round_seconds`); they appear once the peer reports a round.
   */
  observeRound (report: RoundFigures): void {
    if (this.roundMetrics === null) {
      this.roundMetrics = {
        bytes: new Counter({ name: 'peer_ring_bytes_sent_total', help: 'Bytes this peer sent to its ring successors', registers: [this.registry] }),
        received: new Counter({ name: 'peer_ring_bytes_received_total', help: 'Bytes this peer read from its ring predecessors', registers: [this.registry] }),
        seconds: new Histogram({
          name: 'peer_ring_round_seconds',
          help: 'Wall time of completed all-reduce rounds',
          registers: [this.registry],
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        })
      }
    }
    if (Number.isFinite(report.bytesSent) && report.bytesSent > 0) this.roundMetrics.bytes.inc(report.bytesSent)
    if (Number.isFinite(report.bytesReceived) && report.bytesReceived > 0) this.roundMetrics.received.inc(report.bytesReceived)
    if (Number.isFinite(report.ms) && report.ms >= 0) this.roundMetrics.seconds.observe(report.ms / 1000)
  }

  /** The Prometheus text of this peer's metrics and of the extra registries. */
  async render (): Promise<string> {
    const st = this.components.status()
    this.current = st
    for (const sync of st.syncs) {
      if (this.seenSyncs.has(sync.at)) continue
      this.seenSyncs.add(sync.at)
      this.syncCount += 1
      this.syncBytes += sync.bytes
    }
    if (this.seenSyncs.size > 100) {
      const keep = new Set(st.syncs.map(x => x.at))
      for (const at of this.seenSyncs) if (!keep.has(at)) this.seenSyncs.delete(at)
    }
    try {
      const parts = [await this.registry.metrics()]
      for (const extra of this.components.extra?.() ?? []) parts.push(await extra.metrics())
      return withoutTotalOnNonCounters(parts.map(p => p.endsWith('\n') ? p : `${p}\n`).join(''))
    } finally {
      this.current = null
    }
  }

  get contentType (): string {
    return this.registry.contentType
  }
}

/**
 * The Prometheus text with every family that is not a counter but is named `…_total` renamed without the
 * suffix (`…_current` where that name is taken), as `promtool check metrics` asks: libp2p registers gauges so
 * named (`libp2p_protocol_streams_total`, `libp2p_tcp_inbound_connections_total`, `libp2p_tcp_listener_*`),
 * and its registry is not ours to name. Families are renamed whole: their HELP, TYPE and sample lines.
 */
export function withoutTotalOnNonCounters (text: string): string {
  const lines = text.split('\n')
  const families = new Set<string>()
  const misnamed: string[] = []
  for (const line of lines) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (m === null) continue
    families.add(m[1])
    if (m[2] !== 'counter' && m[1].endsWith('_total')) misnamed.push(m[1])
  }
  if (misnamed.length === 0) return text
  const renamed = new Map<string, string>()
  for (const name of misnamed) {
    const base = name.slice(0, -'_total'.length)
    renamed.set(name, families.has(base) ? `${base}_current` : base)
  }
  const nameOf = (line: string): string | undefined => {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) return /^# \S+ (\S+)/.exec(line)?.[1]
    return /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0]
  }
  return lines.map(line => {
    const name = nameOf(line)
    if (name === undefined) return line
    // a histogram's or summary's series carry a suffix after the family's name
    const family = renamed.has(name) ? name : /^(.*)_(bucket|sum|count)$/.exec(name)?.[1]
    const to = family === undefined ? undefined : renamed.get(family)
    if (family === undefined || to === undefined) return line
    const at = line.indexOf(family)
    return line.slice(0, at) + to + line.slice(at + family.length)
  }).join('\n')
}
