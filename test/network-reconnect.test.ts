/**
 * The reconnect service: its backoff schedule (a pure function), its
 * bookkeeping against a fake network (who is dialled, when, what resets the
 * backoff), and real libp2p hosts in one process: a dropped connection comes
 * back from either side, a member restarted on another port is found at the
 * address the member list now holds, a member that left is not dialled.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { DEFAULT_BACKOFF, ReconnectService, backoffDelay, startNetwork } from '../node/network/index.ts'
import type { Network, ReconnectNetwork } from '../node/network/index.ts'
import { waitFor } from './helpers/peer-process.ts'

const logger = pino({ level: 'silent' })
const stoppers: Array<() => Promise<void>> = []
after(async () => { await Promise.all(stoppers.map(async s => { await s().catch(() => {}) })) })

test('backoff: 0.5 s first, doubling, capped at 4 s, jitter only shortens', () => {
  const top = (a: number): number => backoffDelay(a, DEFAULT_BACKOFF, () => 0)
  const bottom = (a: number): number => backoffDelay(a, DEFAULT_BACKOFF, () => 0.999999)
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10, 100].map(top), [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000])
  assert.deepEqual([0, 1, 2, 3, 10].map(bottom), [250, 500, 1000, 2000, 2000])
  for (let a = 0; a < 50; a++) {
    const d = backoffDelay(a)
    assert.ok(d >= top(a) / 2 && d <= top(a), `attempt ${a}: ${d}`)
  }
  // an absurd attempt count neither overflows nor goes past the cap
  assert.equal(top(1e6), 4000)
  assert.equal(backoffDelay(-3, DEFAULT_BACKOFF, () => 0), 500)
  assert.equal(backoffDelay(2, { initialDelayMs: 100, maxDelayMs: 10_000, factor: 3, jitter: 0 }, Math.random), 900)
})

test('backoff: a member cut off for any time is tried again within cap + dial timeout of its link coming back', () => {
  // the worst case: the link comes back just after an attempt began, which then fails on its timeout
  const dialTimeoutMs = 3000
  let t = 0
  const attempts: number[] = []
  for (let a = 0; t < 120_000; a++) {
    t += backoffDelay(a, DEFAULT_BACKOFF, () => 0)
    attempts.push(t)
    t += dialTimeoutMs
  }
  const gaps = attempts.slice(1).map((x, i) => x - attempts[i])
  assert.ok(Math.max(...gaps) <= DEFAULT_BACKOFF.maxDelayMs + dialTimeoutMs)
  assert.ok(DEFAULT_BACKOFF.maxDelayMs + dialTimeoutMs < 15_000)
})

/** A network whose dials succeed or fail as the test says, with a manual clock. */
class FakeNetwork extends EventEmitter implements ReconnectNetwork {
  readonly peerId = 'me'
  connected = new Set<string>()
  reachable = new Set<string>()
  dials: Array<{ peer: string, at: number, addresses: string[] }> = []
  learned = new Map<string, string[]>()
  now = 0
  isConnected (peer: string): boolean { return this.connected.has(peer) }
  async learnAddresses (peer: string, addresses: string[]): Promise<void> { this.learned.set(peer, addresses) }
  async dial (peer: string): Promise<string> {
    this.dials.push({ peer, at: this.now, addresses: this.learned.get(peer) ?? [] })
    if (!this.reachable.has(peer)) throw new Error('unreachable')
    this.connected.add(peer)
    this.emit('peer.connected', peer)
    return peer
  }
}

/** Advances the fake clock in small steps, letting the service's scan and its dials run. */
async function advance (net: FakeNetwork, svc: ReconnectService, ms: number): Promise<void> {
  for (let i = 0; i < ms / 50; i++) {
    net.now += 50
    ;(svc as unknown as { scan: () => void }).scan()
    await new Promise(resolve => setImmediate(resolve))
  }
}

test('service: dials members not connected and not left, with growing delays, fresh addresses each time, reset on connect', async () => {
  const net = new FakeNetwork()
  const members = new Map<string, { addresses: string[], state: string }>([
    ['me', { addresses: ['/self'], state: 'alive' }],
    ['b', { addresses: ['/b/1'], state: 'dead' }],
    ['c', { addresses: ['/c/1'], state: 'left' }],
    ['d', { addresses: ['/d/1'], state: 'alive' }]
  ])
  net.connected.add('d')
  const svc = new ReconnectService({ network: net, members: () => members, logger }, { random: () => 0, now: () => net.now, scanMs: 60_000 })
  assert.equal(svc.isStarted, false)
  assert.equal(net.listenerCount('peer.connected'), 0, 'the constructor does nothing')
  svc.start()
  assert.equal(svc.isStarted, true)
  await advance(net, svc, 12_000)
  // only b: itself, one that left and one connected are never dialled
  assert.deepEqual([...new Set(net.dials.map(d => d.peer))], ['b'])
  const at = net.dials.map(d => d.at)
  const gaps = at.slice(1).map((x, i) => x - at[i])
  assert.equal(at[0], 500)
  assert.deepEqual(gaps.slice(0, 5), [1000, 2000, 4000, 4000, 4000].slice(0, gaps.length))
  assert.equal(svc.status.attempts, net.dials.length)
  assert.equal(svc.status.reconnects, 0)
  assert.equal(svc.status.pending.length, 1)
  assert.equal(svc.status.pending[0].peerId, 'b')
  assert.equal(svc.status.pending[0].lastError, 'unreachable')
  assert.ok(svc.status.pending[0].nextAttemptAt! > net.now)

  // b comes back on another port: the next attempt uses the address the members list holds now
  members.set('b', { addresses: ['/b/2'], state: 'alive' })
  net.reachable.add('b')
  await advance(net, svc, 4100)
  assert.deepEqual(net.dials.at(-1)?.addresses, ['/b/2'])
  assert.equal(svc.status.reconnects, 1)
  assert.deepEqual(svc.status.pending, [])

  // lost again: the backoff starts afresh at 0.5 s
  net.connected.delete('b')
  net.emit('peer.disconnected', 'b')
  const lostAt = net.now
  const before = net.dials.length
  await advance(net, svc, 600)
  assert.equal(net.dials.length, before + 1)
  assert.equal(net.dials.at(-1)!.at - lostAt, 500)

  // a member that connects by itself (its own dial) is taken off the list, and so is one that leaves
  net.reachable.delete('b')
  net.connected.delete('b')
  net.emit('peer.disconnected', 'b')
  await advance(net, svc, 100)
  assert.equal(svc.status.pending.length, 1)
  net.connected.add('b')
  net.emit('peer.connected', 'b')
  assert.equal(svc.status.pending.length, 0)
  net.connected.delete('b')
  members.set('b', { addresses: ['/b/2'], state: 'left' })
  const n = net.dials.length
  await advance(net, svc, 5000)
  assert.equal(net.dials.length, n, 'a member that left is not dialled')

  svc.stop()
  assert.equal(svc.isStarted, false)
  assert.equal(net.listenerCount('peer.connected'), 0)
  assert.equal(net.listenerCount('peer.disconnected'), 0)
})

const newKey = async (): Promise<PrivateKey> => await generateKeyPair('Ed25519') as unknown as PrivateKey

async function host (privateKey?: PrivateKey): Promise<Network> {
  const n = await startNetwork({ privateKey: privateKey ?? await newKey(), listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger })
  stoppers.push(async () => { await n.stop() })
  return n
}

function memberList (...nets: Network[]): Map<string, { addresses: string[], state: string }> {
  return new Map(nets.map(n => [n.peerId, { addresses: n.addresses(), state: 'alive' }]))
}

test('real hosts: a dropped connection comes back from either side within the first retries', async () => {
  const a = await host()
  const b = await host()
  const members = memberList(a, b)
  const ra = new ReconnectService({ network: a, members: () => members, logger })
  const rb = new ReconnectService({ network: b, members: () => members, logger })
  stoppers.push(async () => { ra.stop(); rb.stop() })
  ra.start()
  rb.start()
  await waitFor('a and b to connect', () => a.isConnected(b.peerId) && b.isConnected(a.peerId) ? true : undefined, 5000, 20)
  for (const [from, to] of [[a, b], [b, a]]) {
    await from.node.hangUp(peerIdFromString(to.peerId))
    const t0 = Date.now()
    await waitFor('the dropped connection to come back', () => a.isConnected(b.peerId) && b.isConnected(a.peerId) ? true : undefined, 5000, 20)
    const ms = Date.now() - t0
    assert.ok(ms < 2000, `back after ${ms} ms`)
  }
  assert.ok(ra.status.reconnects + rb.status.reconnects >= 3, `reconnects: ${ra.status.reconnects} + ${rb.status.reconnects}`)
  assert.deepEqual(ra.status.pending, [])
})

test('real hosts: a member restarted on another port is found at the address the member list holds now', async () => {
  const a = await host()
  const key = await newKey()
  let b = await host(key)
  const members = memberList(a, b)
  const ra = new ReconnectService({ network: a, members: () => members, logger })
  stoppers.push(async () => { ra.stop() })
  ra.start()
  await waitFor('a to reach b', () => a.isConnected(b.peerId) ? true : undefined, 5000, 20)
  const oldAddress = b.addresses()[0]
  await b.stop()
  // down for a while: a keeps trying, with growing delays
  await waitFor('a few failed attempts', () => ra.status.pending[0]?.attempt >= 2 ? true : undefined, 10_000, 20)
  b = await host(key)
  assert.notEqual(b.addresses()[0], oldAddress)
  members.set(b.peerId, { addresses: b.addresses(), state: 'alive' })
  const t0 = Date.now()
  await waitFor('a to reach b on its new port', () => a.isConnected(b.peerId) ? true : undefined, 8000, 20)
  const ms = Date.now() - t0
  assert.ok(ms <= DEFAULT_BACKOFF.maxDelayMs + 1000, `found after ${ms} ms`)
  assert.equal(ra.status.pending.length, 0)
})
