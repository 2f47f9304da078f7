/**
 * The local control API that `peer status` and `peer stop` talk to: HTTP on
 * 127.0.0.1, bearer token, location published in `<data dir>/api.json`.
 *
 * @example
 * const client = await ApiClient.fromDataDir('/home/me/.peer')
 * const status = await client.status()
 */
export { ApiServer } from './server.ts'
export type { ApiComponents, ApiServerInit } from './server.ts'
export { ApiClient } from './client.ts'
export { ApiRequestError, NoPeerRunningError } from './errors.ts'
