/**
 * The local control API that `peer status` and `peer stop` talk to: HTTP on
 * 127.0.0.1, bearer token, location published in `<data dir>/api.json`. A
 * browser opens a page route once with `?token=` and gets a session cookie
 * (HttpOnly, SameSite=Strict, GET requests only) in exchange.
 * `/status` and `/stop` are built in; other parts add routes (node/ops:
 * `/metrics`, `/dashboard`, `/history`, `/swarm`, `/export`, `/eval`).
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const client = await ApiClient.fromDataDir('/home/me/.peer')
 * const status = await client.status()
 * const remove = server.route('GET', '/metrics', async () => ({ body: await render(), contentType: 'text/plain' }))
 */
export { ApiServer } from './server.ts'
export type { ApiComponents, ApiHandler, ApiReply, ApiRequest, ApiServerInit, RouteOptions } from './server.ts'
export { ApiClient } from './client.ts'
export { ApiRequestError, NoPeerRunningError } from './errors.ts'
