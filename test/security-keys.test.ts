/**
 * The swarm's secrets, as pure logic and files: the swarm key in the data dir (created once, mode 0600,
 * reused, never mixed with another swarm's), join tokens (round trip, and anything else refused with the
 * named error, never an echo of the key), allow-list files.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  JOIN_TOKEN_PREFIX, MAX_TOKEN_ADDRESSES, SWARM_KEY_FILE, decodeJoinToken, decodeSwarmKeyFile, encodeJoinToken,
  encodeSwarmKeyFile, generateSwarmKey, isJoinToken, parseAllowList, readAllowList, readSwarmKey, resolveSwarmKey,
  swarmKeyFingerprint, swarmMode
} from '../node/security/index.ts'
import { tempDir } from './helpers/peer-process.ts'

const ID_A = '12D3KooWRm8J3iL796zPFi2EtGGtUJn58AG67gcqzMFHZnnsTzqD'
const ID_B = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq'
const ADDR = `/ip4/10.0.0.5/tcp/4001/p2p/${ID_A}`

test('swarm key: a fresh data dir that starts a swarm gets a key (0600), and keeps it across restarts', async () => {
  const dir = await tempDir()
  try {
    assert.equal(await swarmMode(dir.path), 'fresh')
    const first = await resolveSwarmKey(dir.path, {})
    assert.equal(first.source, 'created')
    assert.equal(first.key?.byteLength, 32)
    const info = await stat(join(dir.path, SWARM_KEY_FILE))
    assert.equal(info.mode & 0o777, 0o600)
    // the file is the libp2p v1 pre-shared key format
    const text = await readFile(join(dir.path, SWARM_KEY_FILE), 'utf8')
    assert.match(text, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    const again = await resolveSwarmKey(dir.path, {})
    assert.equal(again.source, 'data-dir')
    assert.deepEqual(again.key, first.key)
    assert.equal(await swarmMode(dir.path), 'private')
    // joining by address with a key already there is fine (a restart with the same command line)
    assert.deepEqual((await resolveSwarmKey(dir.path, { joining: true })).key, first.key)
    // a looser mode is tightened on read
    await chmod(join(dir.path, SWARM_KEY_FILE), 0o644)
    assert.deepEqual(await readSwarmKey(dir.path), first.key)
    assert.equal((await stat(join(dir.path, SWARM_KEY_FILE))).mode & 0o777, 0o600)
  } finally {
    await dir.remove()
  }
})

test('swarm key: a joiner stores the token\'s key; another swarm\'s key or --open on a private data dir is refused', async () => {
  const dir = await tempDir()
  try {
    const key = generateSwarmKey()
    const joined = await resolveSwarmKey(dir.path, { given: key, joining: true })
    assert.equal(joined.source, 'token')
    assert.equal((await stat(join(dir.path, SWARM_KEY_FILE))).mode & 0o777, 0o600)
    assert.deepEqual(await readSwarmKey(dir.path), key)
    // same token again: fine
    assert.equal((await resolveSwarmKey(dir.path, { given: key, joining: true })).source, 'data-dir')
    // a restart without --join keeps the swarm's key
    assert.deepEqual((await resolveSwarmKey(dir.path, {})).key, key)
    await assert.rejects(resolveSwarmKey(dir.path, { given: generateSwarmKey(), joining: true }), { name: 'SwarmKeyConflictError' })
    await assert.rejects(resolveSwarmKey(dir.path, { open: true }), { name: 'SwarmKeyConflictError' })
    await assert.rejects(resolveSwarmKey(dir.path, { given: key, open: true }), { name: 'SwarmKeyConflictError' })
  } finally {
    await dir.remove()
  }
})

test('swarm key: --open makes no key; a fresh joiner by address without --open is told to use the token', async () => {
  const dir = await tempDir()
  try {
    await assert.rejects(resolveSwarmKey(dir.path, { joining: true }), (err: Error) => err.name === 'SwarmKeyRequiredError' && /join token/.test(err.message))
    assert.equal(await readSwarmKey(dir.path), null, 'nothing written')
    assert.deepEqual(await resolveSwarmKey(dir.path, { open: true }), { key: null, source: 'open' })
    assert.deepEqual(await resolveSwarmKey(dir.path, { open: true, joining: true }), { key: null, source: 'open' })
    // once a peer ran open on the data dir (its identity exists), it stays open
    await writeFile(join(dir.path, 'peer.key'), new Uint8Array([1]))
    assert.equal(await swarmMode(dir.path), 'open')
    assert.deepEqual(await resolveSwarmKey(dir.path, {}), { key: null, source: 'open-data-dir' })
    assert.deepEqual(await resolveSwarmKey(dir.path, { joining: true }), { key: null, source: 'open-data-dir' })
  } finally {
    await dir.remove()
  }
})

test('swarm key file: the v1 format round-trips; anything else is InvalidSwarmKeyError', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), key => {
    assert.deepEqual(decodeSwarmKeyFile(encodeSwarmKeyFile(key)), key)
  }))
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
    try {
      decodeSwarmKeyFile(bytes)
    } catch (err) {
      assert.equal((err as Error).name, 'InvalidSwarmKeyError')
    }
  }))
  const good = new TextDecoder().decode(encodeSwarmKeyFile(generateSwarmKey()))
  for (const bad of [good.replace('/base16/', '/base64/'), good.slice(0, -3), `${good}extra\n`, good.replace('psk/1.0.0', 'psk/2.0.0'), '']) {
    assert.throws(() => decodeSwarmKeyFile(new TextEncoder().encode(bad)), { name: 'InvalidSwarmKeyError' })
  }
  assert.throws(() => decodeSwarmKeyFile(new Uint8Array(4096)), { name: 'InvalidSwarmKeyError' })
  // the fingerprint names the key without revealing it
  const key = generateSwarmKey()
  assert.match(swarmKeyFingerprint(key), /^[0-9a-f]{16}$/)
  assert.ok(!Buffer.from(key).toString('hex').includes(swarmKeyFingerprint(key)))
  assert.notEqual(swarmKeyFingerprint(key), swarmKeyFingerprint(generateSwarmKey()))
})

test('join token: round trip; loopback addresses last; versioned prefix', () => {
  const key = generateSwarmKey()
  const local = `/ip4/127.0.0.1/tcp/4001/p2p/${ID_A}`
  const token = encodeJoinToken({ addresses: [local, ADDR], key })
  assert.ok(token.startsWith(JOIN_TOKEN_PREFIX))
  assert.ok(isJoinToken(token))
  assert.ok(!isJoinToken(ADDR))
  assert.match(token, /^peer1\.[A-Za-z0-9_-]+$/, 'pastes as one word')
  const decoded = decodeJoinToken(`  ${token}\n`)
  assert.deepEqual(decoded.addresses, [ADDR, local])
  assert.deepEqual(decoded.key, key)
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.array(fc.constantFrom(ADDR, local, `/ip4/10.1.2.3/tcp/9/p2p/${ID_B}`, `/ip6/::1/tcp/4001/p2p/${ID_B}`), { minLength: 1, maxLength: 30 }), (k, addresses) => {
    const t = decodeJoinToken(encodeJoinToken({ addresses, key: k }))
    assert.deepEqual(t.key, k)
    assert.ok(t.addresses.length >= 1 && t.addresses.length <= MAX_TOKEN_ADDRESSES)
    assert.deepEqual(new Set(t.addresses), new Set(addresses))
  }))
})

test('join token: damaged, truncated, foreign or newer tokens are InvalidJoinTokenError, and never echo the key', () => {
  const key = generateSwarmKey()
  const token = encodeJoinToken({ addresses: [ADDR], key })
  const keyText = [Buffer.from(key).toString('hex'), Buffer.from(key).toString('base64url')]
  const body = (v: unknown): string => `${JOIN_TOKEN_PREFIX}${Buffer.from(JSON.stringify(v)).toString('base64url')}`
  const k = Buffer.from(key).toString('base64url')
  const bad = [
    '', 'peer1.', 'peer1.!!!', token.slice(0, token.length - 7), token.replace('peer1.', 'peer2.'), token.replace('peer1.', 'xpeer1.'),
    `${token}${'A'.repeat(20_000)}`,
    body({ a: [ADDR] }), body({ k }), body({ a: [], k }), body({ a: [ADDR], k: k.slice(1) }), body({ a: [ADDR], k: `${k}AAAA` }),
    body({ a: ['/ip4/1.2.3.4/tcp/1'], k }), body({ a: ['not a multiaddr'], k }), body({ a: [42], k }), body({ a: [ADDR], k, x: 1 }),
    body({ a: Array(17).fill(ADDR), k }), body([ADDR, k]), body(null), body('peer1.')
  ]
  for (const t of bad) {
    assert.throws(() => decodeJoinToken(t), (err: Error) => {
      assert.equal(err.name, 'InvalidJoinTokenError', `${t.slice(0, 40)}: ${err.message}`)
      for (const secret of keyText) assert.ok(!err.message.includes(secret), 'the error repeats the key')
      return true
    })
  }
  assert.throws(() => decodeJoinToken(token.replace('peer1.', 'peer2.')), /version 2/)
  // fuzz: mutations of a valid token and random strings only ever throw the named error
  fc.assert(fc.property(fc.nat({ max: token.length - 1 }), fc.string({ maxLength: 3 }), (at, insert) => {
    const mutated = token.slice(0, at) + insert + token.slice(at + 1)
    try {
      decodeJoinToken(mutated)
    } catch (err) {
      assert.equal((err as Error).name, 'InvalidJoinTokenError')
    }
  }), { numRuns: 500 })
  fc.assert(fc.property(fc.string({ maxLength: 300 }), text => {
    try {
      decodeJoinToken(`peer1.${text}`)
    } catch (err) {
      assert.equal((err as Error).name, 'InvalidJoinTokenError')
    }
  }))
})

test('allow-list: one peer id per line, # comments, blank lines; a bad line is named', async () => {
  const ids = parseAllowList(`# our machines\n${ID_A}\n\n   ${ID_B}   # gpu-2\r\n${ID_A}\n`)
  assert.deepEqual([...ids].sort(), [ID_A, ID_B].sort())
  assert.equal(parseAllowList('# nobody\n').size, 0)
  assert.throws(() => parseAllowList(`${ID_A}\nnot-a-peer-id\n`, 'allow.txt'), (err: Error) => err.name === 'InvalidAllowListError' && /allow\.txt, line 2/.test(err.message))
  assert.throws(() => parseAllowList(`${ID_A} ${ID_B}\n`), { name: 'InvalidAllowListError' })
  // a generated identity is accepted
  const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519') as never).toString()
  assert.ok(parseAllowList(id).has(id))
  fc.assert(fc.property(fc.string({ maxLength: 200 }), text => {
    try {
      parseAllowList(text)
    } catch (err) {
      assert.equal((err as Error).name, 'InvalidAllowListError')
    }
  }))
  const dir = await tempDir()
  try {
    await writeFile(join(dir.path, 'allow'), `${ID_A}\n`)
    assert.deepEqual([...await readAllowList(join(dir.path, 'allow'))], [ID_A])
    await assert.rejects(readAllowList(join(dir.path, 'missing')), { name: 'InvalidAllowListError' })
  } finally {
    await dir.remove()
  }
})
