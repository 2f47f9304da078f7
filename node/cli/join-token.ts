import type { Command } from 'commander'
import { Option } from 'commander'
import { ApiClient } from '../api/client.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import { EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { dataDirOption } from './options.ts'

interface JoinTokenFlags {
  dataDir?: string
  quiet: boolean
}

/**
 * The addresses of the peer on the data dir: from the running peer's status, else the ones it listened on when
 * it last ran (`addresses.json`), with when that was; null when neither is known.
 */
async function addressesOf (dataDir: string): Promise<{ addresses: string[], running: boolean, at?: number } | null> {
  const { lastAddresses } = await import('../security/index.ts')
  try {
    const client = await ApiClient.fromDataDir(dataDir)
    const addresses = (await client.status()).addresses
    if (Array.isArray(addresses) && addresses.length > 0) return { addresses: addresses as string[], running: true }
    // a peer still starting has no addresses yet: the last known ones are the best guess
  } catch (err) {
    if ((err as Error).name !== 'NoPeerRunningError') throw err
  }
  const last = await lastAddresses(dataDir)
  return last === null ? null : { addresses: last.addresses, running: false, at: last.at }
}

/**
 * `peer join-token`: prints the join token of the data dir's swarm again (the first peer's terminal may be
 * gone), as `docker swarm join-token` does. With the peer running it carries the peer's current addresses;
 * otherwise those it listened on when it last ran, and a note on stderr says so.
 */
export const joinTokenCommand = {
  name: 'join-token',
  configure (cmd: Command): Command {
    return cmd.description('print the join token others start with (peer start --join TOKEN); it carries the swarm key')
      .addOption(dataDirOption())
      .addOption(new Option('-q, --quiet', 'print the token only').default(false))
  },
  async execute (ctx: CliContext, flags: JoinTokenFlags): Promise<number> {
    const dataDir = resolveDataDir(flags.dataDir, ctx.env)
    const security = await import('../security/index.ts')
    const key = await security.readSwarmKey(dataDir)
    if (key === null) {
      if (await security.swarmMode(dataDir) === 'fresh') {
        throw new security.NoJoinTokenError(`data dir ${dataDir} has no ${security.SWARM_KEY_FILE}: no peer has run there yet (\`peer start --data-dir ${dataDir}\` creates a private swarm and prints its token)`)
      }
      const known = await addressesOf(dataDir).catch(() => null)
      const how = known === null ? '' : `; others join it with ${known.addresses.map(a => `\`peer start --open --join ${a}\``).join(' or ')}`
      throw new security.NoJoinTokenError(`data dir ${dataDir} has no ${security.SWARM_KEY_FILE}: its swarm is open (started with --open), so there is no join token${how}`)
    }
    const known = await addressesOf(dataDir)
    if (known === null) {
      throw new security.NoJoinTokenError(`no addresses are known for the peer on data dir ${dataDir}: it is not running and has not recorded where it listened (start it with \`peer start\`, then run \`peer join-token\` again)`)
    }
    const token = security.encodeJoinToken({ addresses: known.addresses, key })
    if (!known.running) {
      const when = known.at !== undefined ? ` (${new Date(known.at).toISOString()})` : ''
      ctx.stderr.write(`note: no peer is running on data dir ${dataDir}; the token carries the addresses it listened on when it last ran${when}: others can join through it once it runs there again on those addresses\n`)
    }
    if (flags.quiet) {
      ctx.stdout.write(`${token}\n`)
    } else {
      ctx.stdout.write('others join this swarm with (the token carries the swarm key: share it like a password):\n')
      ctx.stdout.write(`  peer start --join ${token}\n`)
    }
    return EXIT_OK
  }
}
