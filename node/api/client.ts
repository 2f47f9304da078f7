import { readApiInfo } from '../peer/datadir.ts'
import type { ApiInfo } from '../peer/datadir.ts'
import type { Evaluation, ExportedModel, GeneratedText, History, SwarmView } from '../ops/types.ts'
import { ApiRequestError, NoPeerRunningError } from './errors.ts'

/** How long a CLI call waits for the peer to answer. */
const REQUEST_TIMEOUT_MS = 10_000
/** Export and evaluation run the model over the test split or copy its weights: allow more. */
const LONG_REQUEST_TIMEOUT_MS = 60_000

/**
 * A client of a running peer's control API, found through its data dir.
 * Used by the CLI and by tests; it never starts a peer.
 */
export class ApiClient {
  readonly info: ApiInfo

  constructor (info: ApiInfo) {
    this.info = info
  }

  /** Finds the peer running on a data dir; throws NoPeerRunningError when there is none. */
  static async fromDataDir (dataDir: string): Promise<ApiClient> {
    const found = await readApiInfo(dataDir)
    if (found === null) throw new NoPeerRunningError(`no peer is running on data dir ${dataDir} (no api.json there); start one with \`peer start\``)
    if (found.stale) throw new NoPeerRunningError(`no peer is running on data dir ${dataDir}: api.json is stale (pid ${found.info.pid} is gone)`)
    return new ApiClient(found.info)
  }

  private async fetch (method: 'GET' | 'POST', path: string, signal?: AbortSignal): Promise<Response> {
    try {
      return await fetch(new URL(path, this.info.url), {
        method,
        headers: { authorization: `Bearer ${this.info.token}` },
        signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
    } catch (err) {
      throw new NoPeerRunningError(`the peer (pid ${this.info.pid}) does not answer at ${this.info.url}: ${(err as Error).message}`)
    }
  }

  async request (method: 'GET' | 'POST', path: string, signal?: AbortSignal): Promise<unknown> {
    const res = await this.fetch(method, path, signal)
    const body = await res.json().catch(() => ({}))
    if (!res.ok) throw new ApiRequestError(`${method} ${path}: HTTP ${res.status}: ${(body as { error?: string }).error ?? ''}`, res.status)
    return body
  }

  /** A route that answers text (the Prometheus metrics). */
  async requestText (path: string, signal?: AbortSignal): Promise<string> {
    const res = await this.fetch('GET', path, signal)
    const text = await res.text().catch(() => '')
    if (!res.ok) {
      let error = text
      try { error = (JSON.parse(text) as { error?: string }).error ?? text } catch {}
      throw new ApiRequestError(`GET ${path}: HTTP ${res.status}: ${error}`, res.status)
    }
    return text
  }

  async status (signal?: AbortSignal): Promise<Record<string, unknown>> {
    return await this.request('GET', '/status', signal) as Record<string, unknown>
  }

  async stop (signal?: AbortSignal): Promise<void> {
    await this.request('POST', '/stop', signal)
  }

  /** Prometheus text format. */
  async metrics (signal?: AbortSignal): Promise<string> {
    return await this.requestText('/metrics', signal)
  }

  /** Every live member's status, gathered by the peer over `/peer/status/1.0.0`. */
  async swarm (signal?: AbortSignal): Promise<SwarmView> {
    return await this.request('GET', '/swarm', signal) as SwarmView
  }

  /** Training loss and test accuracy over time, as the dashboard draws them. */
  async history (signal?: AbortSignal): Promise<History> {
    return await this.request('GET', '/history', signal) as History
  }

  /** The current model in TensorFlow.js's layers format (weights base64-encoded). */
  async exportModel (signal?: AbortSignal): Promise<ExportedModel> {
    return await this.request('GET', '/export', signal ?? AbortSignal.timeout(LONG_REQUEST_TIMEOUT_MS)) as ExportedModel
  }

  /** Evaluates the current model on the test split. */
  async evaluate (signal?: AbortSignal): Promise<Evaluation> {
    return await this.request('POST', '/eval', signal ?? AbortSignal.timeout(LONG_REQUEST_TIMEOUT_MS)) as Evaluation
  }

  /** A continuation of `prompt` sampled from the current gpt model (deterministic for a given seed and weights). */
  async generate (params: { prompt: string, tokens?: number, temperature?: number, seed?: number }, signal?: AbortSignal): Promise<GeneratedText> {
    const query = new URLSearchParams({ prompt: params.prompt })
    for (const key of ['tokens', 'temperature', 'seed'] as const) if (params[key] !== undefined) query.set(key, String(params[key]))
    return await this.request('POST', `/generate?${query.toString()}`, signal ?? AbortSignal.timeout(LONG_REQUEST_TIMEOUT_MS)) as GeneratedText
  }

  /** The dashboard's address, with the token a browser needs to open it. */
  dashboardUrl (): string {
    return `${this.info.url}/dashboard?token=${this.info.token}`
  }
}
