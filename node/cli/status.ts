import type { Command } from 'commander'
import { Option } from 'commander'
import { ApiClient } from '../api/client.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import type { PeerStatus } from '../peer/status.ts'
import { EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { statusView } from './format.ts'
import { dataDirOption } from './options.ts'

export const statusCommand = {
  name: 'status',
  configure (cmd: Command): Command {
    return cmd.description('show what the running peer knows (never starts one)')
      .addOption(dataDirOption())
      .addOption(new Option('--json', 'print the status as one JSON object').default(false))
  },
  async execute (ctx: CliContext, flags: { dataDir?: string, json: boolean }): Promise<number> {
    const client = await ApiClient.fromDataDir(resolveDataDir(flags.dataDir, ctx.env))
    const status = await client.status() as unknown as PeerStatus
    ctx.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : `${statusView(status)}\n`)
    return EXIT_OK
  }
}
