/**
 * `npm start`: a local swarm of 3 peers (3 processes on 127.0.0.1) training
 * the default job together, on fresh data dirs; shows the first peer's
 * progress and every peer's final test accuracy and weight hash.
 *
 *   npm start                       # 3 peers
 *   npm start -- --peers 1          # one peer alone
 *   npm start -- --epochs 2         # other arguments go to the first peer's `peer start` (the job)
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { joinTokenOf } from '../node/security/index.ts'

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
const common = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--exit-when-done', '--min-peers', String(peers)]
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

function apiAddress (dataDir: string): string | undefined {
  try {
    return JSON.parse(readFileSync(join(dataDir, 'api.json'), 'utf8')).url
  } catch {
    return undefined
  }
}

async function firstAddress (dataDir: string): Promise<string> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const url = apiAddress(dataDir)
    if (url !== undefined) {
      try {
        const token = JSON.parse(readFileSync(join(dataDir, 'api.json'), 'utf8')).token
        const status = await (await fetch(`${url}/status`, { headers: { authorization: `Bearer ${token}` } })).json() as { addresses: string[] }
        if (status.addresses.length > 0) return status.addresses[0]
      } catch {}
    }
    await sleep(200)
  }
  throw new Error('the first peer did not start listening within 60 s')
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => { for (const c of children) c.kill(signal) })
}

const first = launch('peer-1', args, true)
const exits: Array<Promise<number>> = [new Promise(resolve => first.on('exit', code => { resolve(code ?? 1) }))]
if (peers > 1) {
  const address = await firstAddress(join(base, 'peer-1'))
  // the swarm is private: the others join with its token (address + swarm key)
  const token = await joinTokenOf(join(base, 'peer-1'), [address])
  const joinArgs = token !== null ? ['--join', token] : ['--open', '--join', address]
  for (let n = 2; n <= peers; n++) {
    const child = launch(`peer-${n}`, joinArgs, false)
    exits.push(new Promise(resolve => child.on('exit', code => { resolve(code ?? 1) })))
  }
}
const codes = await Promise.all(exits)
if (peers > 1 && finals.length === peers) {
  const hashes = new Set(finals.map(f => /weights ([0-9a-f]+)/.exec(f)?.[1]))
  process.stdout.write(hashes.size === 1 ? `all ${peers} peers hold identical weights\n` : `weights differ between peers: ${[...hashes].join(' ')}\n`)
}
process.exit(codes.every(c => c === 0) ? 0 : 1)
