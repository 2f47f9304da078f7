import type { Command } from 'commander'
import type { DestinationStream } from 'pino'
import { Option } from 'commander'
import { multiaddr } from '@multiformats/multiaddr'
import { PEER_DEFAULTS } from '../peer/defaults.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import type { PeerStatus } from '../peer/status.ts'
import { BACKENDS } from '../trainer/backends.ts'
import type { BackendChoice } from '../trainer/backends.ts'
import { EXIT_FAILURE, EXIT_OK, UsageError } from './context.ts'
import type { CliContext } from './context.ts'
import { progressLine } from './format.ts'
import { dataDirOption, jobFromFlags, jobOptions, parsePositiveInt } from './options.ts'
import type { JobFlags } from './options.ts'

interface StartFlags extends JobFlags {
  dataDir?: string
  listen: string[]
  join: string[]
  mdns: boolean
  heartbeatMs: number
  memberTimeout: number
  joinTimeout: number
  minPeers: number
  roundTimeout: number
  stepTimeout?: number
  backend: BackendChoice
  checkpointEvery: number
  exitWhenDone: boolean
  logLevel: string
  progressEvery: number
}

function collect (value: string, previous: string[] | undefined): string[] {
  // the first --listen given replaces the default
  return previous === undefined || previous === PEER_DEFAULTS.listen ? [value] : [...previous, value]
}

/** How often the foreground peer prints its progress when not on a terminal (seconds). */
const DEFAULT_PROGRESS_SECONDS = 5

export const startCommand = {
  name: 'start',
  configure (cmd: Command): Command {
    cmd.description('start a peer in the foreground and train the job')
      .addOption(dataDirOption())
      .addOption(new Option('--listen <multiaddr>', 'address to listen on (repeatable; port 0 picks a free port)').argParser(collect).default(PEER_DEFAULTS.listen, PEER_DEFAULTS.listen.join(' ')))
      .addOption(new Option('--join <multiaddr>', 'join the swarm through this peer (repeatable; /ip4/…/tcp/…/p2p/<id>)').argParser(collect).default([]))
      .addOption(new Option('--no-mdns', 'do not discover peers on the LAN with mDNS'))
      .addOption(new Option('--heartbeat-ms <ms>', 'how often this peer renews its membership and claims').argParser(parsePositiveInt).default(PEER_DEFAULTS.heartbeatMs))
      .addOption(new Option('--member-timeout <ms>', 'a member silent this long is dead and its shards are free').argParser(parsePositiveInt).default(PEER_DEFAULTS.memberTimeoutMs))
      .addOption(new Option('--join-timeout <ms>', 'how long to keep trying the --join peers').argParser(parsePositiveInt).default(PEER_DEFAULTS.joinTimeoutMs))
      .addOption(new Option('--min-peers <n>', 'start training once this many members (this one included) are live').argParser(parsePositiveInt).default(1))
      .addOption(new Option('--round-timeout <ms>', 'how long a round waits for every live member to be ready').argParser(parsePositiveInt).default(8000))
      .addOption(new Option('--step-timeout <ms>', 'ring all-reduce step timeout: a lost or stalled neighbour aborts the round within about this').argParser(parsePositiveInt))
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
    // the peer and its dependencies load only when a peer starts, so `peer status` stays quick
    const [{ pino }, { startPeer }] = await Promise.all([import('pino'), import('../peer/index.ts')])
    const logger = pino({ level: flags.logLevel, base: { pid: process.pid } }, ctx.stderr as NodeJS.WritableStream as DestinationStream)
    const out = (line: string): void => { ctx.stdout.write(`${line}\n`) }
    for (const addr of [...flags.listen, ...flags.join]) {
      try {
        multiaddr(addr)
      } catch (err) {
        throw new UsageError(`not a multiaddr: ${addr} (${(err as Error).message})`)
      }
    }
    for (const addr of flags.join) {
      if (!addr.includes('/p2p/')) throw new UsageError(`--join ${addr}: the address must end with /p2p/<peer id> (peer start prints it)`)
    }
    const peer = await startPeer({
      dataDir,
      job,
      backend: flags.backend,
      checkpointEvery: flags.checkpointEvery,
      logger,
      listen: flags.listen,
      join: flags.join,
      mdns: flags.mdns,
      heartbeatMs: flags.heartbeatMs,
      memberTimeoutMs: flags.memberTimeout,
      joinTimeoutMs: flags.joinTimeout,
      minPeers: flags.minPeers,
      collectTimeoutMs: flags.roundTimeout,
      stepTimeoutMs: flags.stepTimeout
    })
    peer.on('waiting', w => { out(`waiting for peers: ${w.live} of ${w.needed} live`) })

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
        out(`peer id ${s.peerId ?? '-'}; others join this swarm with:`)
        for (const a of s.addresses) out(`  peer start --join ${a}`)
        if (s.training !== null && s.training.step > 0) out(`resumed at step ${s.training.step}, epoch ${s.training.epoch + 1}`)
      }
      if (state === 'done') {
        const s = peer.status()
        out(`done: ${s.training?.epochs ?? 0} epochs, step ${s.training?.step ?? 0}, test accuracy ${s.training?.accuracy?.toFixed(4) ?? '-'}, weights ${s.training?.weightsHash ?? '-'}`)
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
