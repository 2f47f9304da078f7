/**
 * The benchmarks' way to read a running peer's status: its control API's address and token from the data dir's
 * api.json, then GET /status. Null while the peer is not up (no api.json yet, refused, timed out).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export async function readStatus<T> (dataDir: string, timeoutMs = 2000): Promise<T | null> {
  try {
    const api = JSON.parse(readFileSync(join(dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
    const res = await fetch(`${api.url}/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(timeoutMs) })
    return await res.json() as T
  } catch {
    return null
  }
}
