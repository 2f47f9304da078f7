/**
 * `peer join-token` prints the join token again: with the peer running (its current addresses, the same token
 * `peer start` printed, and a second peer joins with it), after it stopped (the addresses it last listened on,
 * with a note saying so), and refuses clearly where there is no token: a data dir no peer ran on, an open swarm.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeJoinToken, readSwarmKey, swarmKeysEqual } from '../node/security/index.ts'
import { runPeer, spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import type { PeerChild } from './helpers/peer-process.ts'
import { statusOf } from './helpers/swarm.ts'

const LOCAL = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--progress-every', '60', '--heartbeat-ms', '500', '--member-timeout', '4000']
/** A job that outlasts the test: the peers are stopped, not done. */
const JOB = ['--epochs', '1000', '--hidden', '16', '--shards', '4']

/** The token in a `  peer start --join <token>` line. */
function tokenIn (stdout: string): string | undefined {
  return /^\s+peer start --join (peer1\.\S+)$/m.exec(stdout)?.[1]
}

async function stopped (p: PeerChild): Promise<void> {
  p.child.kill('SIGTERM')
  const r = await p.exited(60_000)
  assert.equal(r.code, 0, r.stderr)
}

test('peer join-token prints the token of a running peer, and of a stopped one from its last addresses', async () => {
  const dir = await tempDir('peer-join-token-')
  const a = join(dir.path, 'a')
  const b = join(dir.path, 'b')
  const first = spawnPeer(['start', '--data-dir', a, ...LOCAL, ...JOB])
  let second: PeerChild | undefined
  try {
    const printed = await waitFor('peer start to print its join token', () => tokenIn(first.stdout), 60_000)
    const status = await waitFor('the peer to answer status', async () => await statusOf(a), 30_000)

    const r = await runPeer(['join-token', '--data-dir', a], { timeoutMs: 20_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^others join this swarm with .*share it like a password/)
    assert.equal(tokenIn(r.stdout), printed, 'the token peer start printed')
    assert.equal(r.stderr, '', 'no note: the peer is running')
    const token = decodeJoinToken(printed)
    assert.ok(swarmKeysEqual(token.key, (await readSwarmKey(a))!), 'it carries the data dir\'s swarm key')
    assert.deepEqual([...token.addresses].sort(), [...status.addresses].sort(), 'and the running peer\'s addresses')

    const quiet = await runPeer(['join-token', '-q', '--data-dir', a], { timeoutMs: 20_000 })
    assert.equal(quiet.code, 0, quiet.stderr)
    assert.equal(quiet.stdout, `${printed}\n`, '--quiet: the token alone')

    // a second machine joins with what join-token printed
    second = spawnPeer(['start', '--data-dir', b, ...LOCAL, '--join', quiet.stdout.trim()])
    await waitFor('the joiner to be a live member beside the first peer', async () => {
      const s = await statusOf(b)
      return s !== undefined && s.members.filter(m => m.live).length === 2 ? s : undefined
    }, 60_000)
    await stopped(second)
    second = undefined

    await stopped(first)
    const recorded = JSON.parse(await readFile(join(a, 'addresses.json'), 'utf8')) as { addresses: string[] }
    assert.deepEqual(recorded.addresses, status.addresses, 'peer start recorded where it listened')
    const later = await runPeer(['join-token', '--data-dir', a], { timeoutMs: 20_000 })
    assert.equal(later.code, 0, later.stderr)
    assert.equal(tokenIn(later.stdout), printed, 'with the peer stopped: the same token, from its last addresses')
    assert.match(later.stderr, /no peer is running on data dir .*addresses it listened on when it last ran \(\d{4}-/)
  } finally {
    first.child.kill('SIGKILL')
    second?.child.kill('SIGKILL')
    await first.exited(10_000).catch(() => {})
    await second?.exited(10_000).catch(() => {})
    await dir.remove()
  }
})

test('peer join-token without a swarm key: a data dir no peer ran on, an open swarm; exit 1, naming why', async () => {
  const dir = await tempDir('peer-join-token-')
  const open = join(dir.path, 'open')
  try {
    const fresh = await runPeer(['join-token', '--data-dir', join(dir.path, 'nothing')], { timeoutMs: 20_000 })
    assert.equal(fresh.code, 1)
    assert.equal(fresh.stdout, '')
    assert.match(fresh.stderr, /^peer join-token: data dir .*nothing has no swarm\.key: no peer has run there yet/)

    const peer = spawnPeer(['start', '--open', '--data-dir', open, ...LOCAL, ...JOB])
    try {
      await waitFor('the open peer to print its address', () => /^\s+peer start --open --join (\S+)$/m.exec(peer.stdout)?.[1], 60_000)
      const r = await runPeer(['join-token', '--data-dir', open], { timeoutMs: 20_000 })
      assert.equal(r.code, 1)
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /has no swarm\.key: its swarm is open \(started with --open\), so there is no join token; others join it with `peer start --open --join \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+`/)
      assert.doesNotMatch(r.stderr, /\n {4}at /, 'a message, not a stack trace')
    } finally {
      await stopped(peer).catch(() => { peer.child.kill('SIGKILL') })
    }
  } finally {
    await dir.remove()
  }
})
