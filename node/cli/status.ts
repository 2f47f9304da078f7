import type { Command } from 'commander'
import { Option } from 'commander'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiClient } from '../api/client.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import type { PeerStatus } from '../peer/status.ts'
import { EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { statusView, swarmView } from './format.ts'
import { dataDirOption, parsePositiveInt, parsePositiveNumber } from './options.ts'

interface StatusFlags {
  dataDir?: string
  json: boolean
  swarm: boolean
  watch: boolean
  interval: number
  count?: number
}

/** How often `--watch` refreshes by default (seconds). */
const DEFAULT_INTERVAL_S = 2

/** Terminal control for refreshing in place: home, clear to end of line, clear below, cursor hidden while watching. */
const HOME = '\x1b[H'
const CLEAR_LINE = '\x1b[K'
const CLEAR_BELOW = '\x1b[J'
const CLEAR_SCREEN = '\x1b[2J'
const HIDE_CURSOR = '\x1b[?25l'
const SHOW_CURSOR = '\x1b[?25h'

async function render (dataDir: string, flags: StatusFlags): Promise<string> {
  const client = await ApiClient.fromDataDir(dataDir)
  if (flags.swarm) {
    const view = await client.swarm()
    return flags.json ? JSON.stringify(view) : swarmView(view)
  }
  const status = await client.status() as unknown as PeerStatus
  if (flags.json) return JSON.stringify(status)
  return `${statusView(status)}\ndashboard ${client.dashboardUrl()}`
}

export const statusCommand = {
  name: 'status',
  configure (cmd: Command): Command {
    return cmd.description('show what the running peer knows (never starts one)')
      .addOption(dataDirOption())
      .addOption(new Option('--json', 'print the status as one JSON object (with --watch: one per line)').default(false))
      .addOption(new Option('--swarm', 'every live member\'s status, gathered by the peer over /peer/status/1.0.0, in one table').default(false))
      .addOption(new Option('--watch', 'refresh in place until interrupted').default(false))
      .addOption(new Option('--interval <seconds>', 'seconds between refreshes with --watch').argParser(parsePositiveNumber).default(DEFAULT_INTERVAL_S))
      .addOption(new Option('--count <n>', 'with --watch: stop after this many refreshes').argParser(parsePositiveInt))
  },
  async execute (ctx: CliContext, flags: StatusFlags): Promise<number> {
    const dataDir = resolveDataDir(flags.dataDir, ctx.env)
    if (!flags.watch) {
      ctx.stdout.write(`${await render(dataDir, flags)}\n`)
      return EXIT_OK
    }
    const tty = (ctx.stdout as { isTTY?: boolean }).isTTY === true && !flags.json
    const stop = new AbortController()
    const onSignal = (): void => { stop.abort() }
    ctx.signals?.on('SIGINT', onSignal)
    ctx.signals?.on('SIGTERM', onSignal)
    if (tty) ctx.stdout.write(HIDE_CURSOR + CLEAR_SCREEN)
    try {
      for (let n = 1; !stop.signal.aborted; n++) {
        let text: string
        try {
          text = await render(dataDir, flags)
        } catch (err) {
          // a peer that stops or restarts is shown as such; the watch goes on until interrupted
          const e = err as Error
          if (e.name !== 'NoPeerRunningError' && e.name !== 'ApiRequestError') throw err
          text = flags.json ? JSON.stringify({ error: e.message }) : `${e.message}\n(waiting for a peer)`
        }
        if (flags.json) {
          ctx.stdout.write(`${text}\n`)
        } else if (tty) {
          const head = `every ${flags.interval} s: peer status${flags.swarm ? ' --swarm' : ''}    ${new Date().toLocaleTimeString()}    (Ctrl-C to stop)`
          ctx.stdout.write(HOME + [head, '', ...text.split('\n')].map(l => l + CLEAR_LINE).join('\n') + '\n' + CLEAR_BELOW)
        } else {
          ctx.stdout.write(`--- ${new Date().toISOString()}\n${text}\n`)
        }
        if (flags.count !== undefined && n >= flags.count) break
        await sleep(flags.interval * 1000, undefined, { signal: stop.signal }).catch(() => {})
      }
    } finally {
      if (tty) ctx.stdout.write(SHOW_CURSOR)
      ctx.signals?.off('SIGINT', onSignal)
      ctx.signals?.off('SIGTERM', onSignal)
    }
    return EXIT_OK
  }
}
