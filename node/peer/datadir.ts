/**
 * The data dir: one LevelDB database (`db/`), the peer's API file
 * (`api.json`), and later keys and shards. One running peer per data dir.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { pidAlive } from '../common/process.ts'

export const API_FILE = 'api.json'

/** `--data-dir`, else `PEER_HOME`, else `~/.peer`. */
export function resolveDataDir (flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.PEER_HOME ?? join(homedir(), '.peer'))
}

export interface ApiInfo {
  url: string
  token: string
  pid: number
}

/** The API file of the peer on this data dir, or null; `stale` when its process is gone. */
export async function readApiInfo (dataDir: string): Promise<{ info: ApiInfo, stale: boolean } | null> {
  let text: string
  try {
    text = await readFile(join(dataDir, API_FILE), 'utf8')
  } catch {
    return null
  }
  try {
    const info = JSON.parse(text) as ApiInfo
    if (typeof info.url !== 'string' || typeof info.token !== 'string' || typeof info.pid !== 'number') throw new Error('fields')
    return { info, stale: !pidAlive(info.pid) || info.pid === process.pid }
  } catch {
    return { info: { url: '', token: '', pid: 0 }, stale: true }
  }
}

