/**
 * A running `peer start` against stock libp2p nodes written here with the public libraries (not our network
 * code): without the swarm key, or with another key, no connection opens; with the key but not on the
 * allow-list, the peer refuses it; with the key and on the list, it connects (so the refusals are the
 * protection at work, not a broken node). The swarm key and the control API's token never appear in status or
 * logs; the key file and the API file are 0600; the control API answers on 127.0.0.1 only and only with its token.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { preSharedKey } from '@libp2p/pnet'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { runPeer, spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import type { PeerChild } from './helpers/peer-process.ts'
import { LOCAL, statusOf } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

const JOB = ['--epochs', '10000', '--hidden', '16', '--batch-size', '32', '--shards', '8']

let dir: { path: string, remove: () => Promise<void> }
let proc: PeerChild
let dataDir: string
let status: StatusJson & { security?: unknown }
let swarmKeyHex: string
let allowedKey: PrivateKey
const nodes: Libp2p[] = []

/** The v1 pre-shared key format, written out here rather than with our own encoder. */
const pskFile = (hex: string): Uint8Array => new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}`)

async function stockNode (opts: { psk?: string, privateKey?: PrivateKey }): Promise<Libp2p> {
  const node = await createLibp2p({
    ...(opts.privateKey !== undefined ? { privateKey: opts.privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(opts.psk !== undefined ? { connectionProtector: preSharedKey({ psk: pskFile(opts.psk) }) } : {})
  })
  nodes.push(node)
  return node
}

/** Dials the peer: true if a connection opened and stayed open, false if it was refused (at once or right after). */
async function connects (node: Libp2p): Promise<boolean> {
  try {
    const conn = await node.dial(multiaddr(status.addresses[0]), { signal: AbortSignal.timeout(8000) })
    // a refusal after the handshake closes the connection at once; give it a moment, then ask for a stream
    await new Promise(resolve => setTimeout(resolve, 300))
    if (conn.status !== 'open') return false
    const stream = await conn.newStream('/ipfs/id/1.0.0', { signal: AbortSignal.timeout(3000) })
    await stream.close()
    return true
  } catch {
    return false
  }
}

before(async () => {
  dir = await tempDir('peer-security-')
  dataDir = join(dir.path, 'a')
  allowedKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  const allowFile = join(dir.path, 'allow.txt')
  await writeFile(allowFile, `# the one stock node we let in\n${peerIdFromPrivateKey(allowedKey as never).toString()}\n`)
  proc = spawnPeer(['start', '--data-dir', dataDir, ...LOCAL, ...JOB, '--allow', allowFile, '--log-level', 'debug'])
  status = await waitFor('the peer to listen', async () => {
    const s = await statusOf(dataDir)
    return s !== undefined && s.addresses.length > 0 && /peer start --join peer1\./.test(proc.stdout) ? s : undefined
  }, 60_000)
  swarmKeyHex = (await readFile(join(dataDir, 'swarm.key'), 'utf8')).trim().split('\n')[2]
})

after(async () => {
  await Promise.all(nodes.map(async n => { await Promise.resolve(n.stop()).catch(() => {}) }))
  proc?.child.kill('SIGKILL')
  await proc?.exited(10_000).catch(() => {})
  await dir?.remove()
})

test('a stock libp2p node without the swarm key, or with another key, cannot open a connection', async () => {
  const [none, other, allowedNoKey] = await Promise.all([
    connects(await stockNode({})),
    connects(await stockNode({ psk: randomBytes(32).toString('hex') })),
    // not even with an identity on the allow-list
    connects(await stockNode({ privateKey: allowedKey }))
  ])
  assert.equal(none, false, 'no key')
  assert.equal(other, false, 'another key')
  assert.equal(allowedNoKey, false, 'an allowed identity without the key')
})

test('with the key but not on the allow-list it is refused; with the key and on the list it connects', async () => {
  const outsider = await stockNode({ psk: swarmKeyHex })
  assert.equal(await connects(outsider), false, 'a peer with the key but not on the allow-list was let in')
  const insider = await stockNode({ psk: swarmKeyHex, privateKey: allowedKey })
  assert.equal(await connects(insider), true, 'the allowed peer with the key could not connect')
  const s = await waitFor('the allowed node in the peer list', async () => {
    const st = await statusOf(dataDir)
    return st?.peers.some(p => p.peerId === insider.peerId.toString()) === true ? st : undefined
  }, 10_000)
  assert.ok(!s.peers.some(p => p.peerId === outsider.peerId.toString()), 'the outsider is not a peer')
})

test('the swarm key and the API token appear nowhere in status or logs; key and API files are 0600', async () => {
  const keyFile = join(dataDir, 'swarm.key')
  const apiFile = join(dataDir, 'api.json')
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600)
  assert.equal((await stat(apiFile)).mode & 0o777, 0o600)
  const api = JSON.parse(await readFile(apiFile, 'utf8')) as { url: string, token: string }
  const key = Buffer.from(swarmKeyHex, 'hex')
  const secrets = [swarmKeyHex, key.toString('base64url'), key.toString('base64'), api.token]
  const r = await runPeer(['status', '--json', '--data-dir', dataDir], { timeoutMs: 20_000 })
  assert.equal(r.code, 0, r.stderr)
  const human = await runPeer(['status', '--data-dir', dataDir], { timeoutMs: 20_000 })
  for (const secret of secrets) {
    assert.ok(!r.stdout.includes(secret), 'status --json shows a secret')
    assert.ok(!proc.stderr.includes(secret), 'the logs (debug level) show a secret')
  }
  // (the human-readable status prints the dashboard's link, which carries the API token for the browser)
  for (const secret of secrets.slice(0, 3)) assert.ok(!human.stdout.includes(secret), 'status shows the swarm key')
  const s = JSON.parse(r.stdout) as StatusJson & { security?: { privateNetwork: boolean, allowList: number | null } }
  // the status says a key is in use (once node/peer/status.ts shows `security`)
  if (s.security !== undefined) {
    assert.equal(s.security.privateNetwork, true)
    assert.equal(s.security.allowList, 1)
  }
  // the join token is printed on stdout for the user, and carries this key
  assert.match(proc.stdout, /peer start --join peer1\.[A-Za-z0-9_-]+/)
})

test('the control API: 127.0.0.1 only; no token, a wrong token or a malformed one is refused', async () => {
  const api = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
  const url = new URL(api.url)
  assert.equal(url.hostname, '127.0.0.1')
  const get = async (headers: Record<string, string>, path = '/status'): Promise<number> => (await fetch(new URL(path, api.url), { headers })).status
  assert.equal(await get({}), 401)
  assert.equal(await get({ authorization: `Bearer ${'0'.repeat(api.token.length)}` }), 401)
  assert.equal(await get({ authorization: `Bearer ${api.token.slice(0, -1)}` }), 401)
  assert.equal(await get({ authorization: `Bearer ${api.token}x` }), 401)
  assert.equal(await get({ authorization: `Basic ${Buffer.from(`x:${api.token}`).toString('base64')}` }), 401)
  assert.equal(await get({ authorization: api.token }), 401)
  // the token in the query string is not accepted by the JSON routes
  assert.equal((await fetch(new URL(`/status?token=${api.token}`, api.url))).status, 401)
  const stop = await fetch(new URL('/stop', api.url), { method: 'POST', headers: { authorization: 'Bearer 00' } })
  assert.equal(stop.status, 401)
  assert.equal(await get({ authorization: `Bearer ${api.token}` }), 200)
  // not reachable on any other interface of this machine
  const others = Object.values(networkInterfaces()).flat().filter(i => i !== undefined && i.family === 'IPv4' && !i.internal)
  for (const i of others.slice(0, 2)) {
    await assert.rejects(fetch(`http://${i!.address}:${url.port}/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(3000) }))
  }
  // the peer is still running after all that
  assert.equal(proc.child.exitCode, null)
})
