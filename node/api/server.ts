import { randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, rename, rm, writeFile } from 'node:fs/promises'
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

/** What a route handler gets: the query string, and a signal that aborts when the client goes away. */
export interface ApiRequest {
  query: URLSearchParams
  signal: AbortSignal
}

/** A route's answer: JSON (the default), or a body of a given content type. */
export type ApiReply =
  | { status?: number, json: unknown }
  | { status?: number, body: string | Uint8Array, contentType: string, headers?: Record<string, string> }

export type ApiHandler = (req: ApiRequest) => ApiReply | Promise<ApiReply>

export interface RouteOptions {
  /**
   * A page opened in a browser from a link that carries the token (`?token=`: a browser cannot send a header on
   * navigation). The server trades a valid one for the session cookie and redirects (303) to the same address
   * without it, so the token leaves the address bar and the history. Only for GET routes that return a page.
   */
  tokenInQuery?: boolean
}

export interface ApiServerInit {
  dataDir: string
  pid?: number
}

/** Requests carry no body beyond this (none of the routes needs one). */
const MAX_BODY_BYTES = 1024

const BUILT_IN = new Set(['GET /status', 'POST /stop'])

/** HTTP status for an error a route handler throws: `err.status` where it names one, else 500. */
function statusOf (err: Error): number {
  const status = (err as { status?: unknown }).status
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500
}

/**
 * The local control API: HTTP on 127.0.0.1 only, a random port, a random
 * bearer token. It writes `api.json` (mode 0600) on start and removes it on stop.
 *
 * A browser authenticates with a session cookie instead (HttpOnly, SameSite=Strict), which it gets by opening
 * a `tokenInQuery` page with the token once. The cookie is another random value than the token and is taken
 * for GET requests only: cookies are scoped by host, not port, so every server on 127.0.0.1 the browser
 * visits sees it; a leaked cookie reads status but cannot stop the peer or stand in for the CLI's token.
 */
export class ApiServer {
  private readonly components: ApiComponents
  private readonly init: ApiServerInit
  private readonly token = randomBytes(32).toString('hex')
  private readonly session = randomBytes(32).toString('hex')
  /** The cookie's name carries the port, so that dashboards of several peers on one machine keep their own. */
  private cookieName = 'peer_session'
  private server: Server | null = null
  private readonly routes = new Map<string, { handler: ApiHandler, options: RouteOptions }>()
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
    this.cookieName = `peer_session_${port}`
    this.info = { url: `http://127.0.0.1:${port}`, token: this.token, pid: this.init.pid ?? process.pid }
    const file = join(this.init.dataDir, API_FILE)
    // written whole at 0600 under a temp name, then renamed: never readable by others, never half-written
    const tmp = `${file}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify(this.info), { mode: 0o600 })
    await chmod(tmp, 0o600)
    await rename(tmp, file)
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

  /**
   * Adds a route (`/status` and `/stop` are built in and cannot be replaced).
   * Every route needs the bearer token. Returns a function that removes it.
   */
  route (method: 'GET' | 'POST', path: string, handler: ApiHandler, options: RouteOptions = {}): () => void {
    const key = `${method} ${path}`
    if (BUILT_IN.has(key)) throw new Error(`route ${key} is built in`)
    if (this.routes.has(key)) throw new Error(`route ${key} is already registered`)
    if (options.tokenInQuery === true && method !== 'GET') throw new Error('only GET routes may take the token in the query')
    const entry = { handler, options }
    this.routes.set(key, entry)
    return () => {
      if (this.routes.get(key) === entry) this.routes.delete(key)
    }
  }

  private tokenMatches (given: string, secret = this.token): boolean {
    if (!/^[0-9a-f]+$/.test(given)) return false
    const a = Buffer.from(given)
    const b = Buffer.from(secret)
    return a.length === b.length && timingSafeEqual(a, b)
  }

  /** The bearer token in the Authorization header; or, for a GET, the session cookie. */
  private authorized (req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? ''
    const match = /^Bearer ([0-9a-f]+)$/.exec(header)
    if (match !== null) return this.tokenMatches(match[1])
    if (req.method !== 'GET') return false
    const cookie = sessionCookie(req.headers.cookie, this.cookieName)
    return cookie !== null && this.tokenMatches(cookie, this.session)
  }

  /** A valid `?token=` on a page route: the session cookie, and a 303 to the address without the token. */
  private tradeToken (url: URL, res: ServerResponse): void {
    const rest = new URLSearchParams(url.searchParams)
    rest.delete('token')
    const location = url.pathname + (rest.size > 0 ? `?${rest.toString()}` : '')
    res.writeHead(303, {
      location,
      'set-cookie': `${this.cookieName}=${this.session}; Path=/; HttpOnly; SameSite=Strict`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'content-type': 'text/plain; charset=utf-8'
    })
    res.end(`see ${location}\n`)
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
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    const route = this.routes.get(`${req.method ?? ''} ${path}`)
    const given = url.searchParams.get('token')
    if (route?.options.tokenInQuery === true && given !== null) {
      if (this.tokenMatches(given)) this.tradeToken(url, res)
      else send(401, { error: 'unauthorized: the token in this link is not this peer\'s (run `peer status` for a fresh link)' })
      return
    }
    if (!this.authorized(req)) {
      send(401, { error: 'unauthorized: send Authorization: Bearer <token> (see api.json in the data dir)' })
      return
    }
    try {
      if (req.method === 'GET' && path === '/status') {
        send(200, this.components.status())
      } else if (req.method === 'POST' && path === '/stop') {
        send(202, { stopping: true })
        this.components.stop()
      } else if (route !== undefined) {
        this.reply(route.handler, url.searchParams, res, send)
      } else {
        send(404, { error: `no route ${req.method ?? ''} ${path}` })
      }
    } catch (err) {
      send(500, { error: (err as Error).message })
    }
  }

  private reply (handler: ApiHandler, query: URLSearchParams, res: ServerResponse, send: (code: number, body: unknown) => void): void {
    const gone = new AbortController()
    res.on('close', () => { gone.abort() })
    Promise.resolve()
      .then(async () => await handler({ query, signal: gone.signal }))
      .then(reply => {
        if (res.headersSent || res.destroyed) return
        if ('json' in reply) {
          send(reply.status ?? 200, reply.json)
          return
        }
        res.writeHead(reply.status ?? 200, { 'cache-control': 'no-store', ...reply.headers, 'content-type': reply.contentType })
        res.end(reply.body)
      }, (err: Error) => {
        if (res.headersSent || res.destroyed) return
        send(statusOf(err), { error: err.message })
      })
  }
}

/** The value of cookie `name` in a Cookie header, or null. */
function sessionCookie (header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  for (const part of header.split(';')) {
    const at = part.indexOf('=')
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim()
  }
  return null
}
