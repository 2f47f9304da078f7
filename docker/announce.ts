/**
 * Writes how to join the peer running on a data dir into a file, once that
 * peer is up and has its job: its join token (a private swarm: the token
 * carries the swarm key, so the file is written with mode 0600), or one of
 * its addresses (an open swarm). The entrypoint runs it in the background for
 * PEER_ANNOUNCE_FILE; the other containers of a compose swarm read the file
 * through PEER_JOIN_FILE.
 *
 *   node docker/announce.ts DATA_DIR FILE [TIMEOUT_SECONDS]
 */
import { chmod, rename, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiClient } from '../node/api/client.ts'
import type { PeerStatus } from '../node/peer/status.ts'
import { joinTokenOf } from '../node/security/index.ts'

/** How often to look whether the peer is up. */
const POLL_MS = 500
const DEFAULT_TIMEOUT_S = 600

const LOOPBACK = /^\/(ip4\/127\.|ip6\/::1\/)/

async function main (): Promise<number> {
  const [dataDir, file, timeout] = process.argv.slice(2)
  if (dataDir === undefined || file === undefined) {
    process.stderr.write('usage: node docker/announce.ts DATA_DIR FILE [TIMEOUT_SECONDS]\n')
    return 2
  }
  const deadline = Date.now() + Number(timeout ?? DEFAULT_TIMEOUT_S) * 1000
  while (Date.now() < deadline) {
    try {
      const status = await (await ApiClient.fromDataDir(dataDir)).status() as unknown as PeerStatus
      // joiners adopt the job from this peer: announce it only once it has one
      if (status.job !== null && status.addresses.length > 0) {
        // others reach this container on its own addresses, not on loopback (unless that is all there is)
        const outside = status.addresses.filter(a => !LOOPBACK.test(a))
        const addresses = outside.length > 0 ? outside : status.addresses
        const how = await joinTokenOf(dataDir, addresses) ?? addresses[0]
        const tmp = `${file}.${process.pid}.tmp`
        await writeFile(tmp, `${how}\n`, { mode: 0o600 })
        await chmod(tmp, 0o600)
        await rename(tmp, file)
        process.stderr.write(`announce: wrote how to join ${status.peerId ?? 'this peer'} to ${file}\n`)
        return 0
      }
    } catch {
      // not up yet
    }
    await sleep(POLL_MS)
  }
  process.stderr.write(`announce: the peer on ${dataDir} was not up within ${timeout ?? DEFAULT_TIMEOUT_S} s; nothing written to ${file}\n`)
  return 1
}

process.exitCode = await main()
