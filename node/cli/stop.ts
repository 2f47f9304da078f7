import type { Command } from 'commander'
import { Option } from 'commander'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiClient } from '../api/client.ts'
import { readApiInfo, resolveDataDir } from '../peer/datadir.ts'
import { EXIT_FAILURE, EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { dataDirOption, parsePositiveInt } from './options.ts'

/** How often `peer stop --wait` looks whether the peer is gone. */
const POLL_MS = 200

export const stopCommand = {
  name: 'stop',
  configure (cmd: Command): Command {
    return cmd.description('stop the running peer cleanly (it checkpoints first)')
      .addOption(dataDirOption())
      .addOption(new Option('--timeout <seconds>', 'how long to wait for it to exit').argParser(parsePositiveInt).default(60))
  },
  async execute (ctx: CliContext, flags: { dataDir?: string, timeout: number }): Promise<number> {
    const dataDir = resolveDataDir(flags.dataDir, ctx.env)
    const client = await ApiClient.fromDataDir(dataDir)
    await client.stop()
    const deadline = Date.now() + flags.timeout * 1000
    while (Date.now() < deadline) {
      const api = await readApiInfo(dataDir)
      if (api === null || api.stale) {
        ctx.stdout.write(`stopped the peer with pid ${client.info.pid}\n`)
        return EXIT_OK
      }
      await sleep(POLL_MS)
    }
    ctx.stderr.write(`peer stop: the peer with pid ${client.info.pid} did not exit within ${flags.timeout} s\n`)
    return EXIT_FAILURE
  }
}

