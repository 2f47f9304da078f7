import { randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { API_FILE } from '../peer/datadir.ts'
import type { ApiInfo } from '../peer/datadir.ts'

/** What the API needs from the peer: read its status, ask it to stop. */
export interface ApiComponents {
  status: () => unknown
  stop: () => void
}

export interface ApiServerInit {
  dataDir: string
  pid?: number
}

/** Requests carry no body beyond this (none of the routes needs one). */
const MAX_BODY_BYTES = 1024

/**
 * The local control API: HTTP on 127.0.0.1 only, a random port, a random
 * bearer token. It writes `api.json` (mode 0600) on start and removes it on stop.
 */
export class ApiServer {
  private readonly components: ApiComponents
  private readonly init: ApiServerInit
  private readonly token = randomBytes(32).toString('hex')
  private server: Server | null = null
  info: ApiInfo | null = null

  constructor (components: ApiComponents, init: ApiServerInit) {
    this.components = components
    this.init = init
  }

  async start (): Promise<ApiInfo> {
    const server = createServer((req, res) => { this.handle(req, res) })
    server.headersTimeout = 10_000
    server.requestTimeout = 10_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => { resolve() })
    })
    this.server = server
    const { port } = server.address() as AddressInfo
    this.info = { url: `http://127.0.0.1:${port}`, token: this.token, pid: this.init.pid ?? process.pid }
    const file = join(this.init.dataDir, API_FILE)
    await writeFile(file, JSON.stringify(this.info), { mode: 0o600 })
    await chmod(file, 0o600)
    return this.info
  }

  async stop (): Promise<void> {
    await rm(join(this.init.dataDir, API_FILE), { force: true })
    const server = this.server
    this.server = null
    if (server === null) return
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => { resolve() }))
  }

  private authorized (req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? ''
    const match = /^Bearer ([0-9a-f]+)$/.exec(header)
    if (match === null) return false
    const given = Buffer.from(match[1])
    const expected = Buffer.from(this.token)
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const send = (code: number, body: unknown): void => {
      const text = JSON.stringify(body)
      res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(text)
    }
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) req.destroy()
    })
    if (!this.authorized(req)) {
      send(401, { error: 'unauthorized: send Authorization: Bearer <token> (see api.json in the data dir)' })
      return
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname
    try {
      if (req.method === 'GET' && path === '/status') {
        send(200, this.components.status())
      } else if (req.method === 'POST' && path === '/stop') {
        send(202, { stopping: true })
        this.components.stop()
      } else {
        send(404, { error: `no route ${req.method ?? ''} ${path}` })
      }
    } catch (err) {
      send(500, { error: (err as Error).message })
    }
  }
}
