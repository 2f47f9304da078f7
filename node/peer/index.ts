/**
 * The root actor: opens the data dir, resolves the job, picks the tensor
 * backend, starts the control API, restores the newest checkpoint, runs the
 * trainer, and shuts everything down in order.
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
import { jobId as computeJobId, parseJob } from '../../protocols/job/index.ts'
import type { Job, JobInput } from '../../protocols/job/index.ts'
import { loadDataset } from '../data/dataset.ts'
import { ApiServer } from '../api/index.ts'
import { CheckpointStore, Trainer, createTrainerLogic, selectBackend } from '../trainer/index.ts'
import type { BackendChoice, BackendName, BinaryStore, Evaluation } from '../trainer/index.ts'
import { openDataDir } from './datadir.ts'
import type { PeerDb } from './datadir.ts'
import { JobConflictError } from './errors.ts'
import { peerMachine, peerStateName } from './machine.ts'
import { buildStatus } from './status.ts'
import type { PeerStatus } from './status.ts'

export { peerMachine, peerStateName } from './machine.ts'
export type { PeerSnapshot } from './machine.ts'
export { API_FILE, openDataDir, readApiInfo, resolveDataDir } from './datadir.ts'
export type { ApiInfo } from './datadir.ts'
export { CorruptDataDirError, DataDirInUseError, JobConflictError } from './errors.ts'
export type { PeerStatus } from './status.ts'

export interface PeerOptions {
  dataDir: string
  /** The job asked for (flags or file). Absent: the data dir's job, else the default job. */
  job?: JobInput
  backend: BackendChoice
  /** Steps between checkpoints (one is also written at every epoch end and on stop). */
  checkpointEvery: number
  logger: Logger
}

export interface PeerEvents {
  state: [string]
  evaluation: [Evaluation]
  checkpoint: [number]
}

/** A running peer. `finished` resolves once it has stopped (or failed), with the exit code. */
export class Peer extends EventEmitter<PeerEvents> {
  readonly options: PeerOptions
  readonly actor: Actor<typeof peerMachine>
  readonly finished: Promise<number>
  db: PeerDb | null = null
  job: Job | null = null
  jobId: string | null = null
  backend: BackendName | null = null
  trainer: Trainer | null = null
  api: ApiServer | null = null
  startedAt = Date.now()

  constructor (options: PeerOptions) {
    super()
    this.options = options
    const log = options.logger
    const logic = peerMachine.provide({
      actors: {
        start: fromPromise(async () => { await this.open() }),
        join: fromPromise(async () => {}),
        sync: fromPromise(async () => { await this.restore() }),
        trainer: createTrainerLogic(
          () => this.requireTrainer(),
          new CheckpointStore({
            get: async key => await this.binary().get(key),
            put: async (key, value) => { await this.binary().put(key, value) }
          }),
          {
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
          resolve(1)
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

  private requireTrainer (): Trainer {
    if (this.trainer === null) throw new Error('trainer not created yet')
    return this.trainer
  }

  private binary (): BinaryStore {
    if (this.db === null) throw new Error('data dir not open')
    return this.db.sublevel<string, Uint8Array>('checkpoint', { valueEncoding: 'view' }) as unknown as BinaryStore
  }

  private async open (): Promise<void> {
    const { options } = this
    const log = options.logger
    this.db = await openDataDir(options.dataDir)
    const meta = this.db.sublevel<string, unknown>('meta', { valueEncoding: 'json' })
    const stored = await meta.get('job') as Job | undefined
    if (options.job !== undefined) {
      const asked = parseJob(options.job)
      if (stored !== undefined && computeJobId(stored) !== computeJobId(asked)) {
        throw new JobConflictError(`data dir ${options.dataDir} holds job ${computeJobId(stored)} (${describeJob(stored)}), not the job asked for ${computeJobId(asked)} (${describeJob(asked)}); start without job options to resume it, or use another --data-dir`)
      }
      this.job = asked
    } else {
      this.job = stored !== undefined ? parseJob(stored) : parseJob({})
    }
    this.jobId = computeJobId(this.job)
    await meta.put('job', this.job)
    this.backend = await selectBackend(options.backend, msg => { log.debug(msg) })
    log.info({ backend: this.backend, job: this.jobId }, 'backend ready')
    const dataset = loadDataset(this.job.dataset)
    this.trainer = new Trainer({ job: this.job, jobId: this.jobId, dataset })
    this.api = new ApiServer({
      status: () => this.status(),
      stop: () => { this.stop().catch(() => {}) }
    }, { dataDir: options.dataDir })
    const info = await this.api.start()
    log.info({ url: info.url }, 'control API listening')
  }

  private async restore (): Promise<void> {
    const store = new CheckpointStore(this.binary())
    const ckpt = await store.load()
    if (ckpt === null) return
    await this.requireTrainer().restore(ckpt)
    this.options.logger.info({ step: ckpt.progress.step, epoch: ckpt.progress.epoch }, 'resumed from checkpoint')
  }

  private async close (): Promise<void> {
    await this.api?.stop().catch(() => {})
    await this.db?.close().catch(() => {})
  }

  /** Asks the peer to stop: it finishes its step, checkpoints, and shuts down. */
  async stop (): Promise<number> {
    this.actor.send({ type: 'peer.stop' })
    return await this.finished
  }

  status (): PeerStatus {
    return buildStatus(this)
  }
}

function describeJob (job: Job): string {
  return `${job.dataset}/${job.model}, ${job.epochs} epochs, batch ${job.batchSize}`
}

export async function startPeer (options: PeerOptions): Promise<Peer> {
  const peer = new Peer(options)
  peer.actor.start()
  return peer
}
