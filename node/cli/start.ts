import type { Command } from 'commander'
import { Option } from 'commander'
import { pino } from 'pino'
import { resolveDataDir, startPeer } from '../peer/index.ts'
import type { PeerStatus } from '../peer/index.ts'
import { BACKENDS } from '../trainer/index.ts'
import type { BackendChoice } from '../trainer/index.ts'
import { EXIT_FAILURE, EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { progressLine } from './format.ts'
import { dataDirOption, jobFromFlags, jobOptions, parsePositiveInt } from './options.ts'
import type { JobFlags } from './options.ts'

interface StartFlags extends JobFlags {
  dataDir?: string
  backend: BackendChoice
  checkpointEvery: number
  exitWhenDone: boolean
  logLevel: string
  progressEvery: number
}

/** How often the foreground peer prints its progress when not on a terminal (seconds). */
const DEFAULT_PROGRESS_SECONDS = 5

export const startCommand = {
  name: 'start',
  configure (cmd: Command): Command {
    cmd.description('start a peer in the foreground and train the job')
      .addOption(dataDirOption())
      .addOption(new Option('--backend <name>', 'tensor backend').choices(['auto', ...BACKENDS]).default('auto'))
      .addOption(new Option('--checkpoint-every <steps>', 'steps between checkpoints').argParser(parsePositiveInt).default(100))
      .addOption(new Option('--exit-when-done', 'exit 0 when the job is done instead of serving until stopped').default(false))
      .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('warn'))
      .addOption(new Option('--progress-every <seconds>', 'seconds between progress lines').argParser(parsePositiveInt).default(DEFAULT_PROGRESS_SECONDS))
    for (const option of jobOptions()) cmd.addOption(option)
    return cmd
  },
  async execute (ctx: CliContext, flags: StartFlags): Promise<number> {
    const job = jobFromFlags(flags)
    const dataDir = resolveDataDir(flags.dataDir, ctx.env)
    const logger = pino({ level: flags.logLevel, base: { pid: process.pid } }, ctx.stderr as NodeJS.WritableStream as pino.DestinationStream)
    const out = (line: string): void => { ctx.stdout.write(`${line}\n`) }
    const peer = await startPeer({ dataDir, job, backend: flags.backend, checkpointEvery: flags.checkpointEvery, logger })

    let stopping = false
    const stop = (): void => {
      if (stopping) return
      stopping = true
      out('stopping: finishing the current step and writing a checkpoint…')
      peer.stop().catch(() => {})
    }
    ctx.signals?.on('SIGINT', stop)
    ctx.signals?.on('SIGTERM', stop)

    let announced = false
    peer.on('state', state => {
      if (state === 'training' && !announced) {
        announced = true
        const s = peer.status()
        out(`peer started: data dir ${dataDir}, backend ${s.backend ?? '-'}, job ${s.job?.id ?? '-'} (${s.job?.dataset}/${s.job?.model})`)
        if (s.training !== null && s.training.step > 0) out(`resumed at step ${s.training.step}, epoch ${s.training.epoch + 1}`)
      }
      if (state === 'done') {
        const s = peer.status()
        out(`done: ${s.training?.epochs ?? 0} epochs, step ${s.training?.step ?? 0}, test accuracy ${s.training?.accuracy?.toFixed(4) ?? '-'}`)
        if (flags.exitWhenDone) stop()
        else out('the job is done; the peer keeps serving its status until stopped (Ctrl-C or `peer stop`)')
      }
    })
    peer.on('evaluation', e => {
      out(`epoch ${e.epoch} done: test accuracy ${e.accuracy.toFixed(4)}, test loss ${e.loss.toFixed(4)} (step ${e.step})`)
    })
    const timer = setInterval(() => {
      const s: PeerStatus = peer.status()
      if (s.state === 'training' || s.state === 'reducing') out(progressLine(s))
    }, flags.progressEvery * 1000)
    timer.unref()

    const code = await peer.finished
    clearInterval(timer)
    ctx.signals?.off('SIGINT', stop)
    ctx.signals?.off('SIGTERM', stop)
    if (code !== EXIT_OK) {
      ctx.stderr.write(`peer start: ${peer.error ?? 'failed'}\n`)
      return EXIT_FAILURE
    }
    out('stopped')
    return EXIT_OK
  }
}
