/**
 * A network lab for tests: each host in its own network namespace, wired by a
 * veth pair into a bridge that lives in a namespace of the lab's own (the
 * root namespace is never touched), so tests can cut and restore real links,
 * split the hosts into groups that cannot reach each other, and limit a
 * host's bandwidth, instead of standing in for a network fault with SIGSTOP.
 *
 *   lab namespace:   br0 (br1, br2… while split)   v1 v2 v3 (bridge ports)
 *                                                   |  |  |   veth pairs
 *   host namespaces: a: eth0 10.77.0.2   b: eth0 10.77.0.3   c: eth0 10.77.0.4   (and lo)
 *
 * - `cut(host)` takes the host's bridge port down: its eth0 loses carrier and
 *   whatever it sends, or is sent to it, is dropped (a cable pulled: nothing
 *   is refused, connections hang until their own timeouts). `restore(host)`
 *   brings it back up.
 * - `split([['a','b'],['c']])` moves each group's ports onto a bridge of its
 *   own (hosts in no group are detached from every bridge); `heal()` puts all
 *   ports back on br0.
 * - `dropConnections(host)` aborts the host's TCP connections on its side
 *   (`ss -K`), as a connection manager giving up on a peer would.
 * - `limit(host, mbit)` shapes the host's traffic both ways with `tbf` (egress
 *   of its eth0, and of its bridge port, which is its ingress); null lifts it.
 * - `request(host, …)` makes an HTTP request to 127.0.0.1 inside a host's
 *   namespace (where a peer's control API listens) through a small relay the
 *   lab runs there on a Unix socket: far cheaper than a `peer status` process.
 *
 * Every lab has a unique prefix (`nl-<pid>-<random>`), so parallel runs do not
 * collide; `destroy()` kills whatever runs in its namespaces and deletes them,
 * and a process 'exit' handler does the same for labs a failed test left.
 * Labs of processes that are gone are removed by the next `createLab`.
 *
 * Needs root and iproute2; `labAvailable()` says why not otherwise, and tests
 * skip with that reason.
 *
 * @example
 * const reason = await labAvailable(); if (reason !== null) return t.skip(reason)
 * const lab = await createLab(['a', 'b', 'c'])
 * try { lab.cut('c'); …; lab.restore('c') } finally { await lab.destroy() }
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readApiInfo } from '../../node/peer/index.ts'
import type { Placement, StatusJson } from './swarm.ts'

export interface ExecResult {
  code: number | null
  stdout: string
  stderr: string
}

/** The subnet every lab uses (each lab's hosts sit in their own namespaces, so labs never see each other's). */
const SUBNET = '10.77.0'
const PREFIX = 'nl'

async function run (cmd: string, args: string[], timeoutMs = 10_000): Promise<ExecResult> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
      resolve({ code, stdout, stderr: stderr !== '' ? stderr : (err?.message ?? '') })
    })
  })
}

async function must (cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`)
  return r.stdout
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function namespaces (): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'])
  return r.code !== 0 ? [] : r.stdout.split('\n').map(l => l.split(' ')[0]).filter(s => s !== '')
}

/** Kills every process in a namespace and deletes it (synchronous: also used from the 'exit' handler). */
function deleteNamespaceSync (ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    for (const pid of pids.split('\n').map(Number).filter(p => p > 0)) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  } catch {}
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch {}
}

async function deleteNamespace (ns: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', ns])
  for (const pid of pids.stdout.split('\n').map(Number).filter(p => p > 0)) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  await run('ip', ['netns', 'del', ns])
}

/** Removes the namespaces of labs whose process is gone (a run killed before it could clean up). */
async function removeStaleLabs (): Promise<void> {
  const re = new RegExp(`^${PREFIX}-(\\d+)-[0-9a-f]+-`)
  for (const ns of await namespaces()) {
    const m = re.exec(ns)
    if (m !== null && !pidAlive(Number(m[1]))) await deleteNamespace(ns)
  }
}

let available: Promise<string | null> | null = null

/**
 * Null when labs can be made here; otherwise why not (not root, no `ip`, no
 * namespaces, no veth or bridge, no `tc`/tbf). Probed once per process.
 */
export async function labAvailable (): Promise<string | null> {
  available ??= probe()
  return await available
}

async function probe (): Promise<string | null> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the tests as root, as CI does)'
  const ip = await run('ip', ['-V'])
  if (ip.code !== 0) return `no iproute2 \`ip\` command: ${ip.stderr.trim()}`
  const tc = await run('tc', ['-V'])
  if (tc.code !== 0) return `no iproute2 \`tc\` command: ${tc.stderr.trim()}`
  const ns = `${PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}-probe`
  try {
    const steps: Array<[string, string[]]> = [
      ['ip', ['netns', 'add', ns]],
      ['ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']],
      ['ip', ['-n', ns, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v2']],
      ['ip', ['-n', ns, 'link', 'set', 'v1', 'master', 'br0']],
      ['ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'v2', 'root', 'tbf', 'rate', '8mbit', 'burst', '32kb', 'latency', '100ms']]
    ]
    for (const [cmd, args] of steps) {
      const r = await run(cmd, args)
      if (r.code !== 0) return `cannot build a network lab here (\`${cmd} ${args.join(' ')}\`: ${r.stderr.trim()})`
    }
    return null
  } finally {
    await deleteNamespace(ns)
  }
}

const liveLabs = new Set<NetLab>()
let exitHandler = false

export class NetLab {
  /** This lab's unique prefix: its namespaces are `<id>-lab` and `<id>-<host>`. */
  readonly id: string
  readonly hosts: readonly string[]
  private readonly labNs: string
  private readonly dir: string
  private readonly children = new Set<ChildProcess>()
  private readonly relays = new Map<string, Promise<string>>()
  private bridges = 1
  private destroyed = false

  constructor (id: string, hosts: string[]) {
    this.id = id
    this.hosts = hosts
    this.labNs = `${id}-lab`
    this.dir = mkdtempSync(join(tmpdir(), `${id}-`))
  }

  /** The namespace a host runs in. */
  namespace (host: string): string {
    this.index(host)
    return `${this.id}-${host}`
  }

  /** The host's address on the lab's subnet. */
  address (host: string): string {
    return `${SUBNET}.${this.index(host) + 2}`
  }

  /** What `peer start --listen` should get: the host's address, a free port. */
  listen (host: string): string {
    return `/ip4/${this.address(host)}/tcp/0`
  }

  /** The command prefix that runs a command inside the host's namespace. */
  prefix (host: string): string[] {
    return ['ip', 'netns', 'exec', this.namespace(host)]
  }

  /** Runs a command inside the host's namespace, to completion. */
  async exec (host: string, cmd: string, args: string[] = [], timeoutMs = 30_000): Promise<ExecResult> {
    return await run('ip', ['netns', 'exec', this.namespace(host), cmd, ...args], timeoutMs)
  }

  /** Starts a command inside the host's namespace; it is killed by destroy() if still running. */
  spawn (host: string, cmd: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.namespace(host), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options })
    this.children.add(child)
    child.on('exit', () => { this.children.delete(child) })
    return child
  }

  /** Takes the host's link down: it can reach no one and no one can reach it. */
  async cut (host: string): Promise<void> {
    await must('ip', ['-n', this.labNs, 'link', 'set', this.port(host), 'down'])
  }

  /** Brings the host's link back up. */
  async restore (host: string): Promise<void> {
    await must('ip', ['-n', this.labNs, 'link', 'set', this.port(host), 'up'])
  }

  /**
   * Kills the host's TCP connections to the other hosts on its side only, as a
   * connection manager that gives up on a peer, or a NAT that forgets a flow,
   * would (`ss -K`): the host sees them aborted at once; the other ends learn
   * it from the reset their next packet gets. Listening sockets stay.
   * Returns how many were killed.
   */
  async dropConnections (host: string): Promise<number> {
    const r = await run('ip', ['netns', 'exec', this.namespace(host), 'ss', '-K', '-H', '-t', 'dst', `${SUBNET}.0/24`])
    if (r.code !== 0) throw new Error(`ss -K in ${host}: ${r.stderr.trim()}`)
    // ss lists the sockets it killed (none where the kernel cannot: CONFIG_INET_DIAG_DESTROY)
    return r.stdout.split('\n').filter(l => l.trim() !== '').length
  }

  /**
   * Splits the hosts into groups that reach each other only within a group
   * (2|1: `[['a','b'],['c']]`, 2|2: `[['a','b'],['c','d']]`). A host in no
   * group reaches no one.
   */
  async split (groups: string[][]): Promise<void> {
    const seen = new Set<string>()
    for (const g of groups) for (const h of g) {
      if (seen.has(h)) throw new Error(`host ${h} is in two groups`)
      seen.add(h)
    }
    while (this.bridges < groups.length) await this.addBridge(this.bridges++)
    for (const [i, g] of groups.entries()) for (const h of g) await must('ip', ['-n', this.labNs, 'link', 'set', this.port(h), 'master', `br${i}`])
    for (const h of this.hosts) if (!seen.has(h)) await must('ip', ['-n', this.labNs, 'link', 'set', this.port(h), 'nomaster'])
  }

  /** Ends a split: every host on one bridge again. */
  async heal (): Promise<void> {
    for (const h of this.hosts) await must('ip', ['-n', this.labNs, 'link', 'set', this.port(h), 'master', 'br0'])
  }

  /** Limits the host's bandwidth to `mbit` Mbit/s in each direction (token bucket); null lifts the limit. */
  async limit (host: string, mbit: number | null): Promise<void> {
    const devices: Array<[string, string]> = [[this.namespace(host), 'eth0'], [this.labNs, this.port(host)]]
    for (const [ns, dev] of devices) {
      if (mbit === null) {
        await run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root'])
        continue
      }
      if (!(mbit > 0)) throw new Error(`limit: expected a positive rate, got ${mbit}`)
      // a bucket of 10 ms at the rate (at least 32 kB, for the 64 kB segments veth hands over), a queue of 100 ms
      const burstBytes = Math.max(32 * 1024, Math.round(mbit * 1e6 / 8 / 100))
      await must('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', String(burstBytes), 'latency', '100ms'])
    }
  }

  /**
   * An HTTP request to 127.0.0.1:`port` inside the host's namespace (a peer's
   * control API listens there), through the lab's relay on a Unix socket.
   */
  async request (host: string, opts: { port: number, path: string, method?: string, headers?: Record<string, string>, timeoutMs?: number }): Promise<{ status: number, body: string }> {
    const socket = await this.relay(host)
    return await new Promise((resolve, reject) => {
      const req = httpRequest({
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: { host: `127.0.0.1:${opts.port}`, ...opts.headers },
        timeout: opts.timeoutMs ?? 5000,
        createConnection: () => {
          const s = connect(socket)
          s.write(`${opts.port}\n`)
          return s
        }
      }, res => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { body += chunk })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
        res.on('error', reject)
      })
      req.on('timeout', () => { req.destroy(new Error(`no answer from 127.0.0.1:${opts.port} in ${host} within ${opts.timeoutMs ?? 5000} ms`)) })
      req.on('error', reject)
      req.end()
    })
  }

  /**
   * Where a LocalSwarm peer named after a host runs: in that host's namespace,
   * listening on its address, its status read through the relay from the
   * control API its data dir's api.json names.
   */
  placement (): (name: string) => Placement {
    return name => ({
      prefix: this.prefix(name),
      listen: this.listen(name),
      status: async dataDir => await this.peerStatus(name, dataDir)
    })
  }

  /** `peer status --json` of the peer running in `host` on `dataDir`, or undefined when none answers. */
  async peerStatus (host: string, dataDir: string, timeoutMs = 5000): Promise<StatusJson | undefined> {
    const found = await readApiInfo(dataDir)
    if (found === null || found.stale) return undefined
    const port = Number(new URL(found.info.url).port)
    try {
      const r = await this.request(host, { port, path: '/status', headers: { authorization: `Bearer ${found.info.token}` }, timeoutMs })
      return r.status === 200 ? JSON.parse(r.body) as StatusJson : undefined
    } catch {
      return undefined
    }
  }

  /** Deletes the lab's namespaces (killing what runs in them), links and files; safe to call twice. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    liveLabs.delete(this)
    for (const child of this.children) child.kill('SIGKILL')
    for (const ns of [...this.hosts.map(h => `${this.id}-${h}`), this.labNs]) await deleteNamespace(ns)
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** destroy(), synchronously: for the process 'exit' handler. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    liveLabs.delete(this)
    for (const child of this.children) child.kill('SIGKILL')
    for (const ns of [...this.hosts.map(h => `${this.id}-${h}`), this.labNs]) deleteNamespaceSync(ns)
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Builds the namespaces, the bridge, and one veth pair per host. Called by createLab. */
  async build (): Promise<void> {
    await must('ip', ['netns', 'add', this.labNs])
    await this.addBridge(0)
    for (const [i, host] of this.hosts.entries()) {
      const ns = this.namespace(host)
      await must('ip', ['netns', 'add', ns])
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      await must('ip', ['-n', this.labNs, 'link', 'add', `v${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      await must('ip', ['-n', this.labNs, 'link', 'set', `v${i + 1}`, 'master', 'br0'])
      await must('ip', ['-n', this.labNs, 'link', 'set', `v${i + 1}`, 'up'])
      await must('ip', ['-n', ns, 'addr', 'add', `${this.address(host)}/24`, 'dev', 'eth0'])
      await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    }
  }

  private async addBridge (i: number): Promise<void> {
    await must('ip', ['-n', this.labNs, 'link', 'add', `br${i}`, 'type', 'bridge'])
    await must('ip', ['-n', this.labNs, 'link', 'set', `br${i}`, 'up'])
  }

  private index (host: string): number {
    const i = this.hosts.indexOf(host)
    if (i < 0) throw new Error(`no host ${host} in lab ${this.id} (hosts: ${this.hosts.join(', ')})`)
    return i
  }

  private port (host: string): string {
    return `v${this.index(host) + 1}`
  }

  /**
   * Starts (once per host) a relay inside the host's namespace: it listens on
   * a Unix socket (those are not namespaced), reads a first line with a port,
   * then pipes the connection to 127.0.0.1:port. It exits with the lab, or
   * when this process goes (its stdin closes).
   */
  private async relay (host: string): Promise<string> {
    let ready = this.relays.get(host)
    if (ready === undefined) {
      const socket = join(this.dir, `${host}.sock`)
      const child = this.spawn(host, process.execPath, ['-e', RELAY, socket], { stdio: ['pipe', 'pipe', 'pipe'] })
      let err = ''
      child.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-2000) })
      ready = new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout?.on('data', (b: Buffer) => {
          out += b.toString()
          if (out.includes('ready')) resolve(socket)
        })
        // a relay that went away is started afresh by the next request
        child.on('exit', code => {
          if (this.relays.get(host) === ready) this.relays.delete(host)
          if (process.env.NETLAB_DEBUG !== undefined) process.stderr.write(`netlab: the relay in ${host} exited (${code}): ${err}\n`)
          reject(new Error(`the relay in ${host} exited (${code}): ${err}`))
        })
      })
      ready.catch(() => {})
      this.relays.set(host, ready)
    }
    return await ready
  }
}

const RELAY = `
const net = require('node:net')
const socket = process.argv[1]
const server = net.createServer(c => {
  c.on('error', () => {})
  let buf = Buffer.alloc(0)
  const onData = d => {
    buf = Buffer.concat([buf, d])
    const nl = buf.indexOf(10)
    if (nl < 0) { if (buf.length > 16) c.destroy(); return }
    c.pause()
    c.off('data', onData)
    const t = net.connect(Number(buf.subarray(0, nl).toString()), '127.0.0.1')
    t.on('error', () => c.destroy())
    c.on('close', () => t.destroy())
    if (nl + 1 < buf.length) t.write(buf.subarray(nl + 1))
    c.pipe(t)
    t.pipe(c)
  }
  c.on('data', onData)
})
server.listen(socket, () => process.stdout.write('ready\\n'))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
`

/** Builds a lab with one namespace per host, all on one bridge. Destroy it in a finally (or an after hook). */
export async function createLab (hosts: string[]): Promise<NetLab> {
  const reason = await labAvailable()
  if (reason !== null) throw new Error(reason)
  if (hosts.length === 0 || hosts.length > 250) throw new Error('a lab has 1 to 250 hosts')
  for (const h of hosts) {
    if (!/^[a-z0-9]{1,12}$/.test(h)) throw new Error(`host names are 1 to 12 lowercase letters or digits (got ${h})`)
  }
  if (new Set(hosts).size !== hosts.length) throw new Error('host names must differ')
  await removeStaleLabs()
  const lab = new NetLab(`${PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}`, hosts)
  liveLabs.add(lab)
  if (!exitHandler) {
    exitHandler = true
    const cleanup = (): void => { for (const l of [...liveLabs]) l.destroySync() }
    process.on('exit', cleanup)
    // a run stopped by a signal does not emit 'exit': clean up, then die of the signal as it would have
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => { cleanup(); process.kill(process.pid, signal) })
    }
  }
  try {
    await lab.build()
  } catch (err) {
    await lab.destroy()
    throw err
  }
  return lab
}
