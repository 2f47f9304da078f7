/**
 * Operations: what an operator looks at. `startOps(peer)` registers, on a
 * peer that has joined its swarm,
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
 * It is called by the peer once it has joined (trainer, rounds, api and
 * network exist), and stopped first when the peer closes.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * this.ops = await startOps(this)
 * // on close
 * await this.ops.stop()
 */
import type { EventEmitter } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Registry } from 'prom-client'
import type { Peer } from '../peer/index.ts'
import type { Evaluation as TrainerEvaluation } from '../trainer/index.ts'
import { TrainingHistory } from './history.ts'
import { OpsMetrics } from './metrics.ts'
import type { RoundReport } from './metrics.ts'
import { evaluateModel, exportModel, generateText } from './model.ts'
import { StatusService } from './status-service.ts'
import { memberSummary } from './summary.ts'
import type { SwarmView } from './types.ts'

export { OpsMetrics } from './metrics.ts'
export type { OpsMetricsComponents, RoundReport } from './metrics.ts'
export { StatusService, markAgreement } from './status-service.ts'
export type { StatusServiceComponents, StatusServiceInit } from './status-service.ts'
export { TrainingHistory } from './history.ts'
export { evaluateModel, exportModel, generateText, WEIGHTS_FILE } from './model.ts'
export { memberSummary } from './summary.ts'
export type * from './types.ts'

export interface Ops {
  stop: () => Promise<void>
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

const started = new WeakMap<Peer, Promise<Ops>>()

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

/** Registers metrics, the dashboard, swarm status, export and eval on a joined peer. Calling it twice returns the first handle. */
export async function startOps (peer: Peer, init: OpsInit = {}): Promise<Ops> {
  const existing = started.get(peer)
  if (existing !== undefined) return await existing
  const ops = open(peer, init).then(handle => ({
    stop: async () => {
      await handle.stop()
      if (started.get(peer) === ops) started.delete(peer)
    }
  }))
  started.set(peer, ops)
  ops.catch(() => { if (started.get(peer) === ops) started.delete(peer) })
  return await ops
}

async function open (peer: Peer, init: OpsInit): Promise<Ops> {
  const log = peer.options.logger.child({ name: 'peer:ops' })
  const api = peer.api
  const network = peer.network
  const html = await readFile(DASHBOARD_FILE)
  const requireTrainer = () => {
    if (peer.trainer === null) throw new HttpError(503, 'the peer has no model yet (it has not joined its swarm)')
    return peer.trainer
  }

  const history = new TrainingHistory()
  const metrics = new OpsMetrics({
    status: () => peer.status(),
    samples: () => peer.trainer?.progress.samples ?? null,
    extra: () => libp2pRegistry(network)
  })
  const service = network === null
    ? null
    : new StatusService({
      node: network.node,
      summary: () => memberSummary(peer.status()),
      prepare: async member => {
        if (!network.isConnected(member)) await network.learnAddresses(member, peer.manifest?.members().get(member)?.addresses ?? [])
      },
      logger: log
    })
  await service?.start()

  let gathering: Promise<SwarmView> | null = null
  const gather = async (): Promise<SwarmView> => {
    if (service === null) throw new HttpError(503, 'the peer has no network yet')
    gathering ??= service.gather(peer.manifest?.live() ?? [], peer.status().ring.members)
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
    const t = peer.trainer
    if (t === null) return
    history.sample({ t: Date.now(), step: t.progress.step, loss: t.loss, samplesPerSec: Math.round(t.samplesPerSec) })
  }
  const evaluationPoint = (e: TrainerEvaluation): void => {
    history.evaluation({ t: Date.now(), step: e.step, epoch: e.epoch, accuracy: e.accuracy, loss: e.loss })
  }
  const last = peer.trainer?.lastEvaluation
  if (last !== null && last !== undefined) evaluationPoint(last)
  sample()
  const timer = setInterval(sample, init.historySampleMs ?? HISTORY_SAMPLE_MS)
  timer.unref()
  peer.on('evaluation', evaluationPoint)
  // per-round figures, where the peer reports its rounds (an event the peer may emit: 'round' with a RoundReport)
  const onRound = (report: RoundReport): void => { metrics.observeRound(report) }
  const events = peer as unknown as EventEmitter
  events.on('round', onRound)

  log.debug('operations routes and the status protocol are up')
  let stopped = false
  return {
    stop: async () => {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      peer.off('evaluation', evaluationPoint)
      events.off('round', onRound)
      for (const remove of removers) remove()
      await service?.stop()
    }
  }
}
