/**
 * The data dir: one LevelDB database (`db/`), the peer's API file
 * (`api.json`), and later keys and shards. One running peer per data dir.
 */
import { mkdir, readFile, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { Level } from 'level'
import { CorruptDataDirError, DataDirInUseError } from './errors.ts'

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

/** True if a process with this pid exists (it may belong to someone else: callers confirm over HTTP). */
export function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
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

export type PeerDb = Level<string, unknown>

/**
 * Creates the data dir if needed and opens its database. Throws DataDirInUseError
 * naming the running peer, or CorruptDataDirError.
 */
export async function openDataDir (dataDir: string): Promise<PeerDb> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const api = await readApiInfo(dataDir)
  if (api !== null && !api.stale) {
    throw new DataDirInUseError(`data dir ${dataDir} is in use by the peer with pid ${api.info.pid} (its API is ${api.info.url}); stop it with \`peer stop --data-dir ${dataDir}\` or pick another --data-dir`)
  }
  if (api !== null) await rm(join(dataDir, API_FILE), { force: true })
  const db: PeerDb = new Level(join(dataDir, 'db'), { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    const code = cause?.code ?? (err as { code?: string }).code
    if (code === 'LEVEL_LOCKED') {
      throw new DataDirInUseError(`data dir ${dataDir} is locked by another peer process (its database is open elsewhere)`)
    }
    if (code === 'LEVEL_CORRUPTION') {
      throw new CorruptDataDirError(`data dir ${dataDir} has a corrupt database (${cause?.message ?? (err as Error).message}); move it away or pick another --data-dir`)
    }
    throw new CorruptDataDirError(`data dir ${dataDir}: cannot open its database: ${cause?.message ?? (err as Error).message}`)
  }
  return db
}
