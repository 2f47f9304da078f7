/**
 * The container's start-up without Docker (there is no engine here): the
 * image's entrypoint script run as a process with environment variables, as
 * the compose file runs it. A seed announces how to join it into a file; a
 * second peer waits for that file and joins; other commands pass through;
 * SIGTERM reaches the peer; a bad value is reported as the peer reports it.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { delimiter, dirname, join } from 'node:path'
import { ROOT, tempDir, waitFor } from './helpers/peer-process.ts'
import type { RunResult } from './helpers/peer-process.ts'
import type { StatusJson } from './helpers/swarm.ts'

const ENTRYPOINT = join(ROOT, 'docker', 'entrypoint.sh')
/** What the compose file sets, on loopback and a free port. */
const BASE = { PEER_LISTEN: '/ip4/127.0.0.1/tcp/0', PEER_MDNS: 'false', PEER_HEARTBEAT_MS: '500', PEER_MEMBER_TIMEOUT: '4000' }

const dirs: Array<{ remove: () => Promise<void> }> = []
interface Entrypoint {
  child: ChildProcess
  exited: Promise<RunResult>
  readonly stdout: string
  readonly stderr: string
}
const children: Entrypoint[] = []

/** Runs the entrypoint under sh, with only the variables given (and a PATH whose `node` is the Node 24 running the tests). */
function run (args: string[], env: Record<string, string>): Entrypoint {
  const child = spawn('sh', [ENTRYPOINT, ...args], {
    cwd: ROOT,
    env: { PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const exited = new Promise<RunResult>(resolve => {
    child.on('exit', (code, signal) => { setImmediate(() => { resolve({ code, signal, stdout, stderr }) }) })
  })
  const handle = { child, exited, get stdout () { return stdout }, get stderr () { return stderr } }
  children.push(handle)
  return handle
}

async function statusVia (dataDir: string): Promise<StatusJson | undefined> {
  const r = await run(['status', '--json'], { PEER_DATA_DIR: dataDir }).exited
  return r.code === 0 ? JSON.parse(r.stdout) as StatusJson : undefined
}

after(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL')
  await Promise.all(children.map(async c => await c.exited))
  for (const d of dirs) await d.remove()
})

test('the entrypoint starts a seed and a joiner from environment variables; they form a swarm', async () => {
  const dir = await tempDir('peer-docker-')
  dirs.push(dir)
  const announce = join(dir.path, 'swarm', 'join')
  await mkdir(dirname(announce))
  const seedDir = join(dir.path, 'seed')
  const joinerDir = join(dir.path, 'joiner')
  const seed = run(['start'], { ...BASE, PEER_DATA_DIR: seedDir, PEER_ANNOUNCE_FILE: announce, PEER_EPOCHS: '1000', PEER_HIDDEN: '16', PEER_SHARDS: '8', PEER_MIN_PEERS: '2' })
  // the joiner starts at once and waits for the seed's file, as the compose services do
  const joiner = run(['start', '--progress-every', '60'], { ...BASE, PEER_DATA_DIR: joinerDir, PEER_JOIN_FILE: announce, PEER_JOIN_WAIT: '60' })
  const statuses = await waitFor('the two peers to be live members of one swarm', async () => {
    const [a, b] = await Promise.all([statusVia(seedDir), statusVia(joinerDir)])
    if (a === undefined || b === undefined) return undefined
    return a.members.filter(m => m.live).length === 2 && b.members.filter(m => m.live).length === 2 ? [a, b] : undefined
  }, 60_000)
  const [a, b] = statuses
  assert.equal(a.job?.id, b.job?.id, 'the joiner adopted the seed\'s job')
  assert.equal(b.job?.epochs, 1000, 'the job came from the seed\'s variables')
  assert.equal(b.shards.total, 8)
  assert.match(joiner.stderr, /waiting for .*join/)
  // the announce file holds the join token (it carries the swarm key: owner-only) or, for an open swarm, an address
  const how = (await readFile(announce, 'utf8')).trim()
  assert.ok(how.startsWith('peer1.') || how.includes(`/p2p/${a.peerId}`), how.slice(0, 40))
  assert.equal((await stat(announce)).mode & 0o777, 0o600)
  assert.match(seed.stderr, /announce: wrote how to join/)

  // SIGTERM reaches the peer (the entrypoint exec'd it): it stops cleanly
  joiner.child.kill('SIGTERM')
  const end = await joiner.exited
  assert.equal(end.code, 0, end.stderr)
  assert.match(end.stdout, /stopped/)
  seed.child.kill('SIGTERM')
  assert.equal((await seed.exited).code, 0)
})

test('a bad variable is reported as the flag it maps to; a bad switch by the entrypoint', async () => {
  const dir = await tempDir('peer-docker-')
  dirs.push(dir)
  const bad = await run(['start'], { ...BASE, PEER_DATA_DIR: join(dir.path, 'd'), PEER_BATCH_SIZE: 'lots' }).exited
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /batch-size/)
  const badSwitch = await run(['start'], { ...BASE, PEER_DATA_DIR: join(dir.path, 'd'), PEER_OPEN: 'maybe' }).exited
  assert.equal(badSwitch.code, 2)
  assert.match(badSwitch.stderr, /entrypoint: expected 1\/true or 0\/false, got 'maybe'/)
  const missing = await run(['start'], { ...BASE, PEER_DATA_DIR: join(dir.path, 'd'), PEER_JOIN_FILE: join(dir.path, 'nothing'), PEER_JOIN_WAIT: '1' }).exited
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /did not appear within 1 s/)
  const status = await run(['status'], { PEER_DATA_DIR: join(dir.path, 'd') }).exited
  assert.equal(status.code, 1, 'other commands pass through, on PEER_DATA_DIR')
  assert.match(status.stderr, /no peer is running on data dir/)
})
