/** Opening the data dir's LevelDB database, with clear errors for a locked or corrupt one. */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { API_FILE, readApiInfo } from './datadir.ts'
import { CorruptDataDirError, DataDirInUseError } from './errors.ts'

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
