/**
 * The root actor: opens the data dir, picks the tensor backend, starts the
 * control API and the services in order, handing each the components it
 * needs (joining: node/network/join.ts; the job's data: node/data/resolve.ts;
 * catching up: node/state-sync/catch-up.ts; operations: node/ops), restores
 * the newest checkpoint, runs the trainer, and shuts everything down in
 * reverse order. It wires and decides; the services do the work.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const peer = await startPeer({ dataDir, backend: 'auto', checkpointEvery: 100, logger })
 * peer.on('evaluation', e => console.log(e.accuracy))
 * await peer.stop()
 */
import { EventEmitter } from 'node:events'
import { createActor, fromPromise } from 'xstate'
import type { Actor } from 'xstate'
import type { Logger } from 'pino'
import type { Job, JobInput } from '../../protocols/job/index.ts'
import { RowSet, resolveJobData } from '../data/index.ts'
import { ModelService, resolveJobModel } from '../models/index.ts'
import type { JobData } from '../data/index.ts'
import { ReplicationService, ShardService, createDataDirShardStore } from '../shard-transfer/index.ts'
import { ReconnectService, connectMembers, joinSwarm, loadOrCreateKey, startNetwork, waitForPeers } from '../network/index.ts'
import { resolveSwarmKey } from '../security/index.ts'
import type { Network } from '../network/index.ts'
import { Manifest } from '../manifest/index.ts'
import { Ring, createKeyedRingTransport, listenHostOf } from '../ring/index.ts'
import { Rounds } from '../rounds/index.ts'
import { StateSyncServer } from '../state-sync/index.ts'
import { CatchUp } from '../state-sync/catch-up.ts'
import type { ManifestStore } from '../manifest/index.ts'
import { ApiServer } from '../api/index.ts'
import { BackendUnavailableError, CheckpointStore, ComputeWorker, Trainer, createLayersNet, createTrainerLogic, selectBackend } from '../trainer/index.ts'
import type { BackendChoice, BackendName, BinaryStore, LayersModelSource } from '../trainer/index.ts'
import { openDataDir } from './store.ts'
import type { PeerDb } from './store.ts'
import { peerMachine, peerStateName } from './machine.ts'
import { buildStatus } from './build-status.ts'
import type { PeerEvents, PeerStatus } from './status.ts'
import { startOps } from '../ops/index.ts'
import type { Ops } from '../ops/index.ts'

export { peerMachine, peerStateName } from './machine.ts'
export type { PeerSnapshot } from './machine.ts'
export { API_FILE, readApiInfo, resolveDataDir } from './datadir.ts'
export { openDataDir } from './store.ts'
export { PEER_DEFAULTS } from './defaults.ts'
export type { ApiInfo } from './datadir.ts'
export { CorruptDataDirError, DataDirInUseError, JobConflictError, JoinFailedError } from './errors.ts'
export type { PeerEvents, PeerStatus, RoundFigures } from './status.ts'

export interface PeerOptions {
  dataDir: string
  /** The job asked for (flags or file). Absent: the data dir's job, else the default job. */
  job?: JobInput
  backend: BackendChoice
  /**
   * Where the gradients are computed: `main`, this thread; `worker`, a worker thread (node/trainer/compute.ts),
   * which keeps this thread (the network, the rounds, the control API) free while a batch trains; wasm backend
   * only. Default main.
   */
  compute?: 'main' | 'worker'
  /** Steps between checkpoints (one is also written at every epoch end and on stop). */
  checkpointEvery: number
  logger: Logger
  /** Multiaddrs to listen on. */
  listen: string[]
  /** Multiaddrs (with /p2p/<id>) of swarm peers to join through; empty: start a swarm. */
  join: string[]
  mdns: boolean
  heartbeatMs: number
  memberTimeoutMs: number
  /** How long to keep trying the --join peers. */
  joinTimeoutMs: number
  /** Members that must be live before training starts. */
  minPeers: number
  /** How long a proposer waits for every live member to be ready for a round. */
  collectTimeoutMs?: number
  /** Per-step timeout of the ring all-reduce: a lost or stalled neighbour aborts the round within about this. */
  stepTimeoutMs?: number
  /** The swarm key from a join token (32 bytes). Absent: the data dir's, or a new one for a new swarm. */
  psk?: Uint8Array
  /** A swarm without a key (`--open`). Default false: a new swarm is private. */
  open?: boolean
  /** Peer ids allowed to connect (`--allow`). Absent: any peer holding the swarm key. */
  allow?: string[]
}

/** How long a leaving peer waits for the others to copy the shards only it holds (small shards take milliseconds). */
const HANDOFF_TIMEOUT_MS = 15_000
/** Failures of the job's own input, found once its data is known (a user's model that does not fit the data set): exit code 2. */
const INPUT_ERRORS = new Set(['InvalidModelError'])

/** A running peer. `finished` resolves once it has stopped (or failed), with the exit code: 0 stopped, 1 failed, 2 the job's input is invalid. */
export class Peer extends EventEmitter<PeerEvents> {
  readonly options: PeerOptions
  readonly actor: Actor<typeof peerMachine>
  readonly finished: Promise<number>
  // the services this actor wires, each null until it is started (in the order of `open` and `join`)
  private db: PeerDb | null = null
  private job: Job | null = null
  private jobId: string | null = null
  private backend: BackendName | null = null
  private trainer: Trainer | null = null
  private api: ApiServer | null = null
  private net: Network | null = null
  /** Redials members that are not connected (from both sides, with backoff), once the job is attached. */
  private reconnect: ReconnectService | null = null
  private manifest: Manifest | null = null
  private ring: Ring | null = null
  private rounds: Rounds | null = null
  private stateServer: StateSyncServer | null = null
  private ops: Ops | null = null
  private shardService: ShardService | null = null
  /** Serves this data dir's user models (`mdl-…`) to joiners. */
  private modelService: ModelService | null = null
  /** An imported data set's shards kept where they are trained (node/shard-transfer/replication.ts). */
  private replication: ReplicationService | null = null
  /** Whether this peer lags the swarm, and fetching the swarm's state when it does. */
  private catchUp: CatchUp | null = null
  /** A stop was asked: no more catching up with the swarm. */
  private stopping = false
  /** The job's data set and shards, once the job is resolved. */
  private data: JobData | null = null
  /** The last round ended without a quorum of this peer's group. */
  private partitioned = false
  /** The newest checkpoint (if any) is in the trainer: before that its step would read as lost progress. */
  private restored = false
  private readonly startedAt = Date.now()

  constructor (options: PeerOptions) {
    super()
    this.options = options
    const log = options.logger
    const logic = peerMachine.provide({
      actors: {
        start: fromPromise(async () => { await this.open() }),
        join: fromPromise(async () => { await this.join() }),
        sync: fromPromise(async ({ signal }) => { await this.restore(signal) }),
        trainer: createTrainerLogic(
          () => this.requireTrainer(),
          new CheckpointStore({
            get: async key => await this.binary().get(key),
            put: async (key, value) => { await this.binary().put(key, value) }
          }),
          {
            allReduce: async (vector, samples, signal) => await this.runRound(vector, samples, signal),
            resync: async signal => {
              // without a quorum only a state that wins over this peer's is worth fetching (none: wait and retry)
              if (this.partitioned) await this.requireCatchUp().run('no quorum of its group', false, signal)
              else await this.requireCatchUp().run('left out of a round', true, signal)
            },
            evaluationShard: () => {
              const group = this.trainer?.progress.group
              const self = this.net?.peerId
              const index = group !== undefined && self !== undefined ? group.members.indexOf(self) : -1
              return group !== undefined && index >= 0 && group.members.length > 1 ? { index, count: group.members.length } : null
            },
            onEvaluation: e => {
              log.info({ epoch: e.epoch, step: e.step, loss: e.loss, accuracy: e.accuracy }, 'evaluation')
              this.emit('evaluation', e)
            },
            onCheckpoint: step => {
              log.debug({ step }, 'checkpoint written')
              this.emit('checkpoint', step)
            }
          }
        ),
        shutdown: fromPromise(async () => { await this.close() })
      }
    })
    this.actor = createActor(logic, { input: { checkpointEvery: options.checkpointEvery } })
    let last = ''
    this.finished = new Promise(resolve => {
      this.actor.subscribe(snapshot => {
        const name = peerStateName(snapshot)
        if (name !== last) {
          last = name
          log.debug({ state: name }, 'state')
          this.emit('state', name)
        }
        if (snapshot.matches('stopped')) resolve(0)
        if (snapshot.matches({ failed: 'halted' })) {
          log.debug({ error: snapshot.context.error }, 'peer failed')
          resolve(INPUT_ERRORS.has(snapshot.context.errorName ?? '') ? 2 : 1)
        }
      })
    })
  }

  get state (): string {
    return peerStateName(this.actor.getSnapshot())
  }

  get error (): string | null {
    return this.actor.getSnapshot().context.error
  }

  /** The libp2p host, once started (null before). */
  get network (): Network | null {
    return this.net
  }

  private requireTrainer (): Trainer {
    if (this.trainer === null) throw new Error('trainer not created yet')
    return this.trainer
  }

  private binary (): BinaryStore {
    if (this.db === null) throw new Error('data dir not open')
    return this.db.sublevel<string, Uint8Array>('checkpoint', { valueEncoding: 'view' }) as unknown as BinaryStore
  }

  /** The worker thread for `--compute worker`, its net built like the trainer's (the preset's, or `model`). */
  private async startCompute (trainer: Trainer, model: LayersModelSource | null): Promise<ComputeWorker> {
    if (this.backend !== 'wasm') throw new BackendUnavailableError(`--compute worker needs the wasm backend; this peer uses ${this.backend ?? 'none'} (add --backend wasm)`)
    const { dataset } = trainer
    const sizes = trainer.net.variables.map(v => v.size)
    const compute = await ComputeWorker.start({ job: trainer.job, shape: { inputShape: dataset.inputShape, features: dataset.features, classes: dataset.classes }, model, sizes })
    this.options.logger.info({ variables: sizes.length }, 'gradients computed in a worker thread')
    return compute
  }

  private async open (): Promise<void> {
    const { options } = this
    const log = options.logger
    this.db = await openDataDir(options.dataDir)
    this.backend = await selectBackend(options.backend, msg => { log.debug(msg) })
    log.info({ backend: this.backend }, 'backend ready')
    this.api = new ApiServer({
      status: () => this.status(),
      stop: () => { this.stop().catch(() => {}) }
    }, { dataDir: options.dataDir })
    const info = await this.api.start()
    log.info({ url: info.url }, 'control API listening')
    // before the identity: a data dir without one is fresh, and a fresh swarm gets a key (swarm.key, 0600)
    const swarm = await resolveSwarmKey(options.dataDir, { given: options.psk, open: options.open, joining: options.join.length > 0 })
    const privateKey = await loadOrCreateKey(options.dataDir)
    this.net = await startNetwork({ privateKey, psk: swarm.key, allow: options.allow, listen: options.listen, join: options.join, mdns: options.mdns, minPingTimeoutMs: options.memberTimeoutMs, logger: log.child({ name: 'peer:network' }) })
    log.info({ peerId: this.net.peerId, addresses: this.net.addresses() }, 'network listening')
    this.manifest = new Manifest({
      network: this.net,
      store: this.db.sublevel<string, unknown>('manifest', { valueEncoding: 'json' }) as unknown as ManifestStore,
      logger: log.child({ name: 'peer:manifest' })
    }, {
      heartbeatMs: options.heartbeatMs,
      memberTimeoutMs: options.memberTimeoutMs,
      localStep: () => this.trainer?.progress.step ?? 0,
      localRound: () => this.trainer?.progress.round ?? 0,
      localGroup: () => {
        const group = this.trainer?.progress.group
        return group === undefined ? undefined : { epoch: group.epoch, size: group.members.length, lead: group.members[0] ?? '' }
      }
    })
    await this.manifest.start()
    this.shardService = new ShardService({ node: this.net.node, store: createDataDirShardStore(options.dataDir), logger: log.child({ name: 'peer:shards' }) })
    await this.shardService.start()
    this.modelService = new ModelService({ node: this.net.node, dataDir: options.dataDir, logger: log.child({ name: 'peer:models' }) })
    await this.modelService.start()
    // The ring's bytes go over direct TCP, keyed over libp2p (docs/ring.md): its listener on libp2p's interface.
    const ringLog = (msg: string): void => { log.debug({ name: 'peer:ring' }, msg) }
    this.ring = new Ring({ transport: createKeyedRingTransport(this.net.node, { host: listenHostOf(options.listen), logger: ringLog }), logger: ringLog }, { stepTimeoutMs: options.stepTimeoutMs })
    await this.ring.start()
  }

  /**
   * Resolves the job and joins the swarm (node/network/join.ts), then wires
   * what trains it: its data, the trainer, the manifest's shards, redialling,
   * rounds, state sync and operations.
   */
  private async join (): Promise<void> {
    const { options } = this
    const log = options.logger
    const network = this.requireNetwork()
    const manifest = this.requireManifest()
    const meta = this.requireDb().sublevel<string, unknown>('meta', { valueEncoding: 'json' })
    const joined = await joinSwarm({ dial: async (address, signal) => await network.dial(address, signal), manifest }, {
      dataDir: options.dataDir, join: options.join, joinTimeoutMs: options.joinTimeoutMs, asked: options.job, stored: await meta.get('job')
    })
    this.job = joined.job
    this.jobId = joined.jobId
    await meta.put('job', this.job)
    const peers = (): string[] => network.connectedPeers().map(p => p.peerId)
    // an imported data set's shards come as this peer's claims say (the replication service, wired below)
    const ensureShard = async (id: string): Promise<void> => {
      if (this.replication === null) throw new Error(`shard ${id} asked for before the replication service started`)
      await this.replication.ensureShard(id)
    }
    const data = await resolveJobData({ dataDir: options.dataDir, node: network.node, peers, logger: log, ensureShard }, this.job)
    this.data = data
    // a user's model (mdl-…): from the data dir, or fetched from the swarm, before the trainer is built
    const model = await resolveJobModel({ dataDir: options.dataDir, node: network.node, peers, logger: log }, this.job)
    const net = model !== null ? await createLayersNet(model, { features: data.dataset.features, classes: data.dataset.classes, seed: this.job.seed }) : undefined
    this.trainer = new Trainer({ job: this.job, jobId: this.jobId, dataset: data.dataset, shardRows: data.shards.map(s => s.rows), swarm: true, ...(net !== undefined ? { net } : {}) })
    if (options.compute === 'worker') this.trainer.useComputeWorker(await this.startCompute(this.trainer, model))
    this.trainer.setRows(RowSet.empty)
    if (manifest.job() === undefined) await manifest.createJob(this.job, data.records())
    manifest.on('change', () => { this.updateRows() })
    await manifest.attachJob(this.jobId)
    if (data.description !== null) {
      this.replication = new ReplicationService({ node: network.node, manifest, logger: log.child({ name: 'peer:shards:replication' }) }, {
        dataDir: options.dataDir, description: data.description, datasetId: this.job.dataset, replicas: this.job.replicas,
        // placement follows the heartbeats; a shard no longer needed here stays ten heartbeats, until claims settle
        intervalMs: options.heartbeatMs, dropAfterMs: 10 * options.heartbeatMs
      })
      this.replication.on('shard.local', () => { this.updateRows() })
      this.replication.start()
    }
    // a restarted peer finds its swarm again through the members it knew, and any member lost later is redialled
    this.reconnect = new ReconnectService({ network, members: () => manifest.members(), logger: log.child({ name: 'peer:network:reconnect' }) })
    this.reconnect.start()
    this.updateRows()
    const trainer = this.trainer
    this.rounds = new Rounds({
      network,
      ring: this.requireRing(),
      liveMembers: () => manifest.live(),
      hasLeft: peer => manifest.members().get(peer)?.state === 'left',
      fetching: () => this.stateServer?.fetching() ?? [],
      prepare: async members => { await connectMembers({ network, members: () => manifest.members(), logger: options.logger }, members) },
      logger: log.child({ name: 'peer:rounds' })
    }, { jobId: this.jobId, collectTimeoutMs: options.collectTimeoutMs, stepTimeoutMs: options.stepTimeoutMs, compression: this.job.compression ?? 'none' })
    this.rounds.start()
    const catchUp = new CatchUp({
      network,
      members: () => manifest.members(),
      live: () => manifest.live(),
      trainer,
      rounds: this.rounds,
      stopping: () => this.stopping,
      logger: log
    })
    this.catchUp = catchUp
    this.rounds.on('behind', round => { catchUp.heardRound(round) })
    this.stateServer = new StateSyncServer({ network, snapshot: async () => await trainer.swarmSnapshot(), weightsHash: () => trainer.weightsHash(), logger: log.child({ name: 'peer:state-sync' }) })
    this.stateServer.start()
    // metrics, dashboard and swarm status (node/ops) once everything they read exists
    this.ops = await startOps({
      api: this.api,
      network,
      status: () => this.status(),
      trainer: () => this.trainer,
      members: () => manifest.members(),
      live: () => manifest.live(),
      events: this,
      logger: log
    })
    log.info({ job: this.jobId, peerId: network.peerId }, joined.joined ? 'joined the swarm' : 'swarm ready')
  }

  /** Points the trainer at the rows of the shards this peer owns now (of an imported data set, those whose files are here). */
  private updateRows (): void {
    if (this.trainer === null || this.manifest === null || this.data === null) return
    this.trainer.setRows(this.data.rowsOf(this.manifest.mine()))
  }

  private async restore (signal?: AbortSignal): Promise<void> {
    const store = new CheckpointStore(this.binary())
    const ckpt = await store.load()
    if (ckpt !== null) {
      await this.requireTrainer().restore(ckpt)
      this.options.logger.info({ step: ckpt.progress.step, samples: ckpt.progress.samples }, 'resumed from checkpoint')
    }
    this.restored = true
    this.requireRounds().setRound(this.requireTrainer().progress.round)
    this.requireRounds().setGroup(this.requireTrainer().progress.group ?? null)
    const manifest = this.requireManifest()
    await waitForPeers({ live: () => manifest.live() }, { minPeers: this.options.minPeers, onWaiting: w => { this.emit('waiting', w) }, signal })
    // a joiner, or a peer restarted behind the swarm, takes the swarm's state first
    await this.requireCatchUp().atStart()
  }

  /**
   * The trainer's `allReduce` hook: takes part in the trainer's current round with this update vector (the
   * rounds decide with whom) and returns the sum; null when the round went ahead without this peer or it holds
   * no quorum of its group: the trainer then catches up instead. `signal` (the trainer machine stopped) ends
   * the rounds' wait for the round.
   */
  private async runRound (vector: Float32Array, samples: number, signal: AbortSignal): Promise<Float32Array | null> {
    const trainer = this.requireTrainer()
    if (this.catchUp?.behind === true) return null
    const result = await this.requireRounds().round({
      round: trainer.progress.round,
      vector,
      weightsHash: () => trainer.weightsHash(),
      samples,
      step: trainer.progress.step,
      // the counts after the gradients (or deltas): samples, the data position, an evaluation's part
      exact: vector.length - trainer.parameterCount
    }, signal)
    this.partitioned = !result.ok && result.outcome === 'partitioned'
    if (!result.ok) return null
    trainer.progress.group = result.group
    if (result.figures !== null) this.emit('round', result.figures)
    return result.sum
  }

  private async close (): Promise<void> {
    const log = this.options.logger
    await this.ops?.stop().catch(() => {})
    this.reconnect?.stop()
    this.rounds?.stop()
    // shards only this peer holds are copied by the others first (it has announced that it leaves; it still serves them)
    await this.replication?.handOff(HANDOFF_TIMEOUT_MS).catch(() => {})
    this.replication?.stop()
    await this.stateServer?.stop().catch(() => {})
    await this.ring?.stop().catch(() => {})
    // the trainer's steps are over (close runs once the trainer machine has stopped or was given up on): its worker thread goes
    this.trainer?.stopComputeWorker()
    await this.shardService?.stop().catch(() => {})
    await this.modelService?.stop().catch(() => {})
    if (this.manifest !== null) {
      await this.manifest.leave().catch(err => { log.debug({ err }, 'leaving the manifest failed') })
      await this.manifest.stop().catch(() => {})
    }
    await this.net?.stop().catch(err => { log.debug({ err }, 'stopping the network failed') })
    await this.api?.stop().catch(() => {})
    await this.db?.close().catch(() => {})
  }

  private requireDb (): PeerDb {
    if (this.db === null) throw new Error('data dir not open')
    return this.db
  }

  private requireNetwork (): Network {
    if (this.net === null) throw new Error('network not started')
    return this.net
  }

  private requireRing (): Ring {
    if (this.ring === null) throw new Error('ring not started')
    return this.ring
  }

  private requireRounds (): Rounds {
    if (this.rounds === null) throw new Error('rounds not started')
    return this.rounds
  }

  private requireCatchUp (): CatchUp {
    if (this.catchUp === null) throw new Error('catch-up not wired yet')
    return this.catchUp
  }

  private requireManifest (): Manifest {
    if (this.manifest === null) throw new Error('manifest not loaded')
    return this.manifest
  }

  /** Asks the peer to stop: it finishes its step, checkpoints, and shuts down. */
  async stop (): Promise<number> {
    // tell the swarm first, so that the next round is formed without this peer and none aborts for it
    this.stopping = true
    await this.manifest?.announceLeaving().catch(() => {})
    this.actor.send({ type: 'peer.stop' })
    return await this.finished
  }

  status (): PeerStatus {
    return buildStatus({
      state: this.state,
      error: this.error,
      dataDir: this.options.dataDir,
      startedAt: this.startedAt,
      backend: this.backend,
      network: this.net,
      reconnect: this.reconnect,
      manifest: this.manifest,
      job: this.job,
      jobId: this.jobId,
      rounds: this.rounds,
      ring: this.ring,
      catchUp: this.catchUp,
      trainer: this.trainer,
      replication: this.replication,
      restored: this.restored
    })
  }
}

export async function startPeer (options: PeerOptions): Promise<Peer> {
  const peer = new Peer(options)
  peer.actor.start()
  return peer
}
