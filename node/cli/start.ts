import type { Command } from 'commander'
import type { DestinationStream } from 'pino'
import { Option } from 'commander'
import { multiaddr } from '@multiformats/multiaddr'
import { PEER_DEFAULTS } from '../peer/defaults.ts'
import { DEFAULT_COLLECT_TIMEOUT_MS } from '../../protocols/rounds/constants.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import type { PeerStatus } from '../peer/status.ts'
import type { Network } from '../network/index.ts'
import { BACKENDS } from '../trainer/backends.ts'
import type { BackendChoice } from '../trainer/backends.ts'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './context.ts'
import type { CliContext } from './context.ts'
import { progressLine } from './format.ts'
import { dataDirOption, jobFromFlags, jobOptions, parsePositiveInt, securityOptions, swarmFromFlags } from './options.ts'
import type { JobFlags, SecurityFlags } from './options.ts'

interface StartFlags extends JobFlags, SecurityFlags {
  dataDir?: string
  listen: string[]
  mdns: boolean
  heartbeatMs: number
  memberTimeout: number
  joinTimeout: number
  minPeers: number
  roundTimeout: number
  stepTimeout?: number
  backend: BackendChoice
  compute: 'main' | 'worker'
  checkpointEvery: number
  exitWhenDone: boolean
  logLevel: string
  progressEvery: number
}

/**
 * Says how others join: the join token of a private swarm (on stdout: it carries the swarm key, so this output
 * is as secret as the key), or the addresses of an open one.
 */
async function announceSwarm (network: Network, dataDir: string, out: (line: string) => void, warn: ((line: string) => void) | null): Promise<void> {
  const { joinTokenOf, rememberAddresses } = await import('../security/index.ts')
  const addresses = network.addresses()
  const token = await joinTokenOf(dataDir, addresses).catch(() => null)
  // for `peer join-token` while this peer is not running (it only serves that: a failure is no reason to stop)
  await rememberAddresses(dataDir, addresses).catch(() => {})
  const { security } = network
  const allow = security.allowList !== null ? `, allow-list of ${security.allowList} peer${security.allowList === 1 ? '' : 's'}` : ''
  if (token !== null && security.privateNetwork) {
    out(`peer id ${network.peerId}; private swarm (key fingerprint ${security.keyFingerprint ?? '-'}${allow})`)
    out('others join this swarm with (the token carries the swarm key: share it like a password):')
    out(`  peer start --join ${token}`)
  } else {
    warn?.('warning: this data dir\'s swarm is open (no swarm key): anyone who can reach it can join')
    out(`peer id ${network.peerId}; open swarm${allow}; others join this swarm with:`)
    for (const a of addresses) out(`  peer start --open --join ${a}`)
  }
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
      .addOption(new Option('--join <token>', 'join the swarm with the join token its first peer printed (repeatable; a /ip4/…/tcp/…/p2p/<id> multiaddr joins an --open swarm)').argParser(collect).default([]))
      .addOption(new Option('--no-mdns', 'do not discover peers on the LAN with mDNS'))
      .addOption(new Option('--heartbeat-ms <ms>', 'how often this peer renews its membership and claims').argParser(parsePositiveInt).default(PEER_DEFAULTS.heartbeatMs))
      .addOption(new Option('--member-timeout <ms>', 'a member silent this long is dead and its shards are free').argParser(parsePositiveInt).default(PEER_DEFAULTS.memberTimeoutMs))
      .addOption(new Option('--join-timeout <ms>', 'how long to keep trying the --join peers').argParser(parsePositiveInt).default(PEER_DEFAULTS.joinTimeoutMs))
      .addOption(new Option('--min-peers <n>', 'start training once this many members (this one included) are live').argParser(parsePositiveInt).default(1))
      .addOption(new Option('--round-timeout <ms>', 'how long a round waits for every live member to be ready').argParser(parsePositiveInt).default(DEFAULT_COLLECT_TIMEOUT_MS))
      .addOption(new Option('--step-timeout <ms>', 'ring all-reduce step timeout: a lost or stalled neighbour aborts the round within about this').argParser(parsePositiveInt))
      .addOption(new Option('--backend <name>', 'tensor backend').choices(['auto', ...BACKENDS]).default('auto'))
      .addOption(new Option('--compute <where>', 'where gradients are computed: main (this thread) or worker (a worker thread, which keeps the network\'s thread free; implies --backend wasm)').choices(['main', 'worker']).default('main'))
      .addOption(new Option('--checkpoint-every <steps>', 'steps between checkpoints').argParser(parsePositiveInt).default(100))
      .addOption(new Option('--exit-when-done', 'exit 0 when the job is done instead of serving until stopped').default(false))
      .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('warn'))
      .addOption(new Option('--progress-every <seconds>', 'seconds between progress lines').argParser(parsePositiveInt).default(DEFAULT_PROGRESS_SECONDS))
    for (const option of securityOptions()) cmd.addOption(option)
    for (const option of jobOptions()) cmd.addOption(option)
    return cmd
  },
  async execute (ctx: CliContext, flags: StartFlags): Promise<number> {
    const dataDir = resolveDataDir(flags.dataDir, ctx.env)
    const job = await jobFromFlags(flags, dataDir)
    // the peer and its dependencies load only when a peer starts, so `peer status` stays quick
    const [{ pino }, { startPeer }] = await Promise.all([import('pino'), import('../peer/index.ts')])
    // JSON logs for machines; readable ones on a terminal
    const destination = (ctx.stderr as { isTTY?: boolean }).isTTY === true
      ? (await import('pino-pretty')).default({ destination: ctx.stderr, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true })
      : ctx.stderr as NodeJS.WritableStream as DestinationStream
    const logger = pino({ level: flags.logLevel, base: { pid: process.pid } }, destination as DestinationStream)
    // on a terminal the progress line is redrawn in place every second; elsewhere a line every --progress-every seconds
    const tty = (ctx.stdout as { isTTY?: boolean }).isTTY === true
    let bar = false
    const out = (line: string): void => {
      ctx.stdout.write(`${bar ? '\r\x1b[2K' : ''}${line}\n`)
      bar = false
    }
    for (const addr of flags.listen) {
      try {
        multiaddr(addr)
      } catch (err) {
        throw new UsageError(`not a multiaddr: ${addr} (${(err as Error).message})`)
      }
    }
    // join tokens and addresses, the swarm key they carry, the allow-list (UsageError on anything wrong)
    const swarm = await swarmFromFlags(flags, dataDir)
    if (swarm.open) {
      ctx.stderr.write('warning: --open: this swarm has no swarm key; anyone who can reach its addresses can join it, read its manifest and send it updates (leave out --open for a private swarm)\n')
    }
    if (flags.compute === 'worker' && flags.backend !== 'auto' && flags.backend !== 'wasm') {
      throw new UsageError(`--compute worker needs the wasm backend, not --backend ${flags.backend}`)
    }
    const peer = await startPeer({
      dataDir,
      job,
      // the worker thread runs the wasm backend (the native ones load once per process)
      backend: flags.compute === 'worker' ? 'wasm' : flags.backend,
      compute: flags.compute,
      checkpointEvery: flags.checkpointEvery,
      logger,
      listen: flags.listen,
      join: swarm.join,
      ...(swarm.key !== null ? { psk: swarm.key } : {}),
      ...(swarm.open ? { open: true } : {}),
      ...(swarm.allow !== null ? { allow: [...swarm.allow] } : {}),
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
    let listening = false
    peer.on('state', state => {
      // once the network is up (a peer waiting for --min-peers never reaches training without the others)
      if (!listening && peer.network !== null) {
        listening = true
        // (--open was warned about already)
        void announceSwarm(peer.network, dataDir, out, swarm.open ? null : line => { ctx.stderr.write(`${line}\n`) })
      }
      if (state === 'training' && !announced) {
        announced = true
        const s = peer.status()
        out(`peer started: data dir ${dataDir}, backend ${s.backend ?? '-'}${s.compute === 'worker' ? ' (gradients in a worker thread)' : ''}, job ${s.job?.id ?? '-'} (${s.job?.dataset}/${s.job?.model})`)
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
      if (s.state !== 'training' && s.state !== 'reducing') return
      if (tty) {
        ctx.stdout.write(`\r\x1b[2K${progressLine(s)}`)
        bar = true
      } else {
        out(progressLine(s))
      }
    }, tty ? 1000 : flags.progressEvery * 1000)
    timer.unref()

    const code = await peer.finished
    clearInterval(timer)
    ctx.signals?.off('SIGINT', stop)
    ctx.signals?.off('SIGTERM', stop)
    if (code !== EXIT_OK) {
      let error = peer.error ?? 'failed'
      if (swarm.join.length > 0 && error.includes('could not reach any --join peer')) {
        error += peer.network?.security.privateNetwork === true
          ? '\n  (is it the same swarm? a peer with another swarm key, or one whose --allow list leaves this peer out, refuses the connection)'
          : '\n  (a private swarm refuses peers without its key: join it with the join token its first peer printed, `peer start --join peer1.…`)'
      }
      ctx.stderr.write(`peer start: ${error}\n`)
      return code === EXIT_USAGE ? EXIT_USAGE : EXIT_FAILURE
    }
    out('stopped')
    return EXIT_OK
  }
}
