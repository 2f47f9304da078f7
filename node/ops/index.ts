/**
 * Operations: what an operator looks at. `startOps(components)` registers,
 * on a peer that has joined its swarm,
 *
 * - control API routes (bearer token, as every route): `GET /metrics`
 *   (Prometheus text), `GET /dashboard` (a self-contained page; its link's
 *   `?token=` is traded for a session cookie and a redirect to the clean
 *   address, and its own requests carry the cookie), `GET /history` (loss
 *   and accuracy curves),
 *   `GET /swarm` (every live member's status), `GET /export` (the model in
 *   TensorFlow.js's layers format; a gpt model in its own), `POST /eval` (test-split evaluation),
 *   `POST /generate?prompt=…&tokens=…&temperature=…&seed=…` (text from a gpt model);
 * - the `/peer/status/1.0.0` protocol, so that other members can ask this
 *   one how it is doing;
 * - a once-a-second sample of the training loss for the curves.
 *
 * It takes the components it reads (OpsComponents), never the peer itself:
 * the peer calls it once it has joined (trainer, rounds, api and network
 * exist), and stops it first when it closes.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const ops = await startOps({ api, network, status: () => peer.status(), trainer: () => trainer, members: () => manifest.members(), live: () => manifest.live(), events: peer, logger })
 * // on close
 * await ops.stop()
 */
import type { EventEmitter } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { ApiServer } from '../api/index.ts'
import type { Network } from '../network/index.ts'
import type { PeerEvents, PeerStatus, RoundFigures } from '../peer/status.ts'
import type { Evaluation as TrainerEvaluation, Trainer } from '../trainer/index.ts'
import { TrainingHistory } from './history.ts'
import { OpsMetrics } from './metrics.ts'
import { evaluateModel, exportModel, generateText } from './model.ts'
import { StatusService } from './status-service.ts'
import { memberSummary } from './summary.ts'
import type { SwarmView } from './types.ts'

export { OpsMetrics } from './metrics.ts'
export type { OpsMetricsComponents } from './metrics.ts'
export { StatusService, markAgreement } from './status-service.ts'
export type { StatusServiceComponents, StatusServiceInit } from './status-service.ts'
export { TrainingHistory } from './history.ts'
export { evaluateModel, exportModel, generateText, WEIGHTS_FILE } from './model.ts'
export { memberSummary } from './summary.ts'
export type * from './types.ts'

export interface Ops {
  stop: () => Promise<void>
}

/** What operations read: each part of the peer they show, and where they hear of evaluations and rounds. */
export interface OpsComponents {
  /** The control API the routes are added to (null: none are). */
  api: Pick<ApiServer, 'route'> | null
  /** The libp2p host (the status protocol, and libp2p's metrics registry); null: no swarm status. */
  network: Network | null
  /** This peer's status now. */
  status: () => PeerStatus
  /** The trainer (export, eval, the loss curve), null before the job is resolved. */
  trainer: () => Trainer | null
  /** Members as the manifest knows them (the addresses to reach one by), and those live now. */
  members: () => ReadonlyMap<string, { addresses?: string[] }>
  live: () => string[]
  /** Where evaluations and completed rounds are heard. */
  events: EventEmitter<PeerEvents>
  logger: Logger
}

export interface OpsInit {
  /** How often the training loss is sampled for the curves (default HISTORY_SAMPLE_MS). */
  historySampleMs?: number
}

/** Two loss samples a second draw a smooth curve and cost nothing measurable (the loss is already smoothed). */
export const HISTORY_SAMPLE_MS = 500

const DASHBOARD_FILE = join(import.meta.dirname, 'dashboard.html')

/** Content-Security-Policy of the dashboard: its own inline script and style, fetches to this API only. */
const DASHBOARD_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const started = new WeakMap<OpsComponents, Promise<Ops>>()

/**
 * The registry libp2p's metrics go to, where the network was created with
 * one (`Network.metricsRegistry`, passed to `@libp2p/prometheus-metrics`).
 */
function libp2pRegistry (network: unknown): Registry[] {
  const registry = (network as { metricsRegistry?: Registry } | null)?.metricsRegistry
  return registry !== undefined ? [registry] : []
}

class HttpError extends Error {
  override name = 'HttpError'
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

/** Registers metrics, the dashboard, swarm status, export and eval on a joined peer. Calling it twice with the same components returns the first handle. */
export async function startOps (components: OpsComponents, init: OpsInit = {}): Promise<Ops> {
  const existing = started.get(components)
  if (existing !== undefined) return await existing
  const ops = open(components, init).then(handle => ({
    stop: async () => {
      await handle.stop()
      if (started.get(components) === ops) started.delete(components)
    }
  }))
  started.set(components, ops)
  ops.catch(() => { if (started.get(components) === ops) started.delete(components) })
  return await ops
}

async function open (components: OpsComponents, init: OpsInit): Promise<Ops> {
  const { api, network, events } = components
  const log = components.logger.child({ name: 'peer:ops' })
  const html = await readFile(DASHBOARD_FILE)
  const requireTrainer = (): Trainer => {
    const trainer = components.trainer()
    if (trainer === null) throw new HttpError(503, 'the peer has no model yet (it has not joined its swarm)')
    return trainer
  }

  const history = new TrainingHistory()
  const metrics = new OpsMetrics({
    status: () => components.status(),
    samples: () => components.trainer()?.progress.samples ?? null,
    extra: () => libp2pRegistry(network)
  })
  const service = network === null
    ? null
    : new StatusService({
      node: network.node,
      summary: () => memberSummary(components.status()),
      prepare: async member => {
        if (!network.isConnected(member)) await network.learnAddresses(member, components.members().get(member)?.addresses ?? [])
      },
      logger: log
    })
  await service?.start()

  let gathering: Promise<SwarmView> | null = null
  const gather = async (): Promise<SwarmView> => {
    if (service === null) throw new HttpError(503, 'the peer has no network yet')
    gathering ??= service.gather(components.live(), components.status().ring.members)
      .finally(() => { gathering = null })
    return await gathering
  }

  const removers: Array<() => void> = []
  if (api !== null) {
    removers.push(
      api.route('GET', '/metrics', async () => ({ body: await metrics.render(), contentType: metrics.contentType })),
      api.route('GET', '/dashboard', () => ({
        body: html,
        contentType: 'text/html; charset=utf-8',
        headers: { 'content-security-policy': DASHBOARD_CSP, 'referrer-policy': 'no-referrer', 'x-content-type-options': 'nosniff' }
      }), { tokenInQuery: true }),
      api.route('GET', '/history', () => ({ json: history.snapshot() })),
      api.route('GET', '/swarm', async () => ({ json: await gather() })),
      api.route('GET', '/export', async () => ({ json: await exportModel(requireTrainer()) })),
      api.route('POST', '/eval', async () => ({ json: await evaluateModel(requireTrainer()) })),
      api.route('POST', '/generate', ({ query }) => ({ json: generateText(requireTrainer(), query) }))
    )
  }

  const sample = (): void => {
    const t = components.trainer()
    if (t === null) return
    history.sample({ t: Date.now(), step: t.progress.step, loss: t.loss, samplesPerSec: Math.round(t.samplesPerSec) })
  }
  const evaluationPoint = (e: TrainerEvaluation): void => {
    history.evaluation({ t: Date.now(), step: e.step, epoch: e.epoch, accuracy: e.accuracy, loss: e.loss })
  }
  const last = components.trainer()?.lastEvaluation
  if (last !== null && last !== undefined) evaluationPoint(last)
  sample()
  const timer = setInterval(sample, init.historySampleMs ?? HISTORY_SAMPLE_MS)
  timer.unref()
  events.on('evaluation', evaluationPoint)
  // per-round figures, as the peer reports its rounds
  const onRound = (figures: RoundFigures): void => { metrics.observeRound(figures) }
  events.on('round', onRound)

  log.debug('operations routes and the status protocol are up')
  let stopped = false
  return {
    stop: async () => {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      events.off('evaluation', evaluationPoint)
      events.off('round', onRound)
      for (const remove of removers) remove()
      await service?.stop()
    }
  }
}
