import { readApiInfo } from '../peer/datadir.ts'
import type { ApiInfo } from '../peer/datadir.ts'
import { ApiRequestError, NoPeerRunningError } from './errors.ts'

/** How long a CLI call waits for the peer to answer. */
const REQUEST_TIMEOUT_MS = 10_000

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

  async request (method: 'GET' | 'POST', path: string, signal?: AbortSignal): Promise<unknown> {
    let res: Response
    try {
      res = await fetch(new URL(path, this.info.url), {
        method,
        headers: { authorization: `Bearer ${this.info.token}` },
        signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
    } catch (err) {
      throw new NoPeerRunningError(`the peer (pid ${this.info.pid}) does not answer at ${this.info.url}: ${(err as Error).message}`)
    }
    const body = await res.json().catch(() => ({}))
    if (!res.ok) throw new ApiRequestError(`${method} ${path}: HTTP ${res.status}: ${(body as { error?: string }).error ?? ''}`, res.status)
    return body
  }

  async status (signal?: AbortSignal): Promise<Record<string, unknown>> {
    return await this.request('GET', '/status', signal) as Record<string, unknown>
  }

  async stop (signal?: AbortSignal): Promise<void> {
    await this.request('POST', '/stop', signal)
  }
}
