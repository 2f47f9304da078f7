/**
 * `npm start`: a local swarm of 3 peers (3 processes on 127.0.0.1) training
 * the default job together, on fresh data dirs; shows the first peer's
 * progress and every peer's final test accuracy and weight hash.
 *
 *   npm start                       # 3 peers
 *   npm start -- --peers 1          # one peer alone
 *   npm start -- --epochs 2         # other arguments go to the first peer's `peer start` (the job)
 *
 * All peers start at once: the first one's data dir gets its identity and swarm key here, and a port free now,
 * so that the join token is known before it runs; the others dial it until it listens (`peer start --join`
 * retries for a while).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateKey } from '../node/network/key.ts'
import { encodeJoinToken, generateSwarmKey, writeSwarmKey } from '../node/security/index.ts'

const root = join(import.meta.dirname, '..')
const bin = join(root, 'bin', 'peer.js')
const args = process.argv.slice(2)
let peers = 3
const i = args.indexOf('--peers')
if (i >= 0) {
  peers = Number(args[i + 1])
  args.splice(i, 2)
  if (!Number.isInteger(peers) || peers < 1 || peers > 16) {
    process.stderr.write('--peers takes a number from 1 to 16\n')
    process.exit(2)
  }
}

const base = mkdtempSync(join(tmpdir(), 'peer-start-'))
process.stdout.write(`local swarm of ${peers} peer${peers > 1 ? 's' : ''}; data dirs under ${base}\n`)
const common = ['--no-mdns', '--exit-when-done', '--min-peers', String(peers)]
/** Any free port on loopback (the first peer of a swarm gets one chosen here instead). */
const LISTEN_ANY = ['--listen', '/ip4/127.0.0.1/tcp/0']
const children: ChildProcess[] = []
const finals: string[] = []

function launch (name: string, extra: string[], show: boolean): ChildProcess {
  const child = spawn(process.execPath, [bin, 'start', '--data-dir', join(base, name), ...common, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  let buffer = ''
  child.stdout?.on('data', (b: Buffer) => {
    buffer += b.toString()
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line.startsWith('done:')) finals.push(`[${name}] ${line}`)
      if (show || line.startsWith('done:')) process.stdout.write(`[${name}] ${line}\n`)
    }
  })
  child.stderr?.on('data', (b: Buffer) => { process.stderr.write(`[${name}] ${b.toString()}`) })
  children.push(child)
  return child
}

/** A port nothing listens on now, for the first peer (it binds it a second or two later). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address() as AddressInfo
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  return port
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => { for (const c of children) c.kill(signal) })
}

let joinArgs: string[] = []
if (peers === 1) {
  launch('peer-1', [...LISTEN_ANY, ...args], true)
} else {
  // the swarm is private: the others join with its token (the first peer's address and the swarm key)
  const firstDir = join(base, 'peer-1')
  mkdirSync(firstDir, { recursive: true, mode: 0o700 })
  const key = generateSwarmKey()
  await writeSwarmKey(firstDir, key)
  const id = peerIdFromPrivateKey(await loadOrCreateKey(firstDir)).toString()
  const port = await freePort()
  launch('peer-1', ['--listen', `/ip4/127.0.0.1/tcp/${port}`, ...args], true)
  joinArgs = ['--join', encodeJoinToken({ addresses: [`/ip4/127.0.0.1/tcp/${port}/p2p/${id}`], key })]
}
for (let n = 2; n <= peers; n++) launch(`peer-${n}`, [...LISTEN_ANY, ...joinArgs], false)
const exits = children.map(async child => await new Promise<number>(resolve => child.on('exit', code => { resolve(code ?? 1) })))
const codes = await Promise.all(exits)
if (peers > 1 && finals.length === peers) {
  const hashes = new Set(finals.map(f => /weights ([0-9a-f]+)/.exec(f)?.[1]))
  process.stdout.write(hashes.size === 1 ? `all ${peers} peers hold identical weights\n` : `weights differ between peers: ${[...hashes].join(' ')}\n`)
}
process.exit(codes.every(c => c === 0) ? 0 : 1)
