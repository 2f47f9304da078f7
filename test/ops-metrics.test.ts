/**
 * The metrics registry without a swarm: values follow the peer's status,
 * counters only grow, per-round figures appear once rounds are reported,
 * libp2p's own metrics (`@libp2p/prometheus-metrics` on a real node) join the
 * same scrape without a clash; names pass `promtool check metrics`; and the
 * control API's added routes keep the bearer token (a page's link token is
 * traded for a GET-only session cookie).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { ApiServer } from '../node/api/server.ts'
import { OpsMetrics, withoutTotalOnNonCounters } from '../node/ops/metrics.ts'
import { TrainingHistory } from '../node/ops/history.ts'
import type { PeerStatus } from '../node/peer/status.ts'
import { NO_PROMTOOL, parsePrometheus, promtoolCheck, valueOf } from './ops-prometheus.ts'

function status (over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    peerId: '12D3KooWS3JqeBUQFHt7q8LDUHKVHdABxM2uQukegvY7UXnASokt',
    addresses: [],
    state: 'training',
    error: null,
    pid: process.pid,
    dataDir: '/tmp/x',
    uptimeSec: 5,
    peers: [{ peerId: 'P2', addresses: [] }],
    members: [
      { peerId: '12D3KooWS3JqeBUQFHt7q8LDUHKVHdABxM2uQukegvY7UXnASokt', state: 'alive', live: true, step: 10, shards: 6 },
      { peerId: 'P2', state: 'alive', live: true, step: 10, shards: 6 },
      { peerId: 'P3', state: 'dead', live: false, step: 3, shards: 0 }
    ],
    job: null,
    shards: { total: 12, mine: ['s1', 's2', 's3', 's4', 's5', 's6'], unowned: 0, owners: {} },
    manifest: { deltasReceived: 4, deltasRejected: 1, syncs: 2, syncsFailed: 0 },
    ring: { round: 10, members: ['A', 'B'], state: 'done', attempt: 0, completed: 10, aborted: 1, last: { round: 9, ms: 12.5, bytesSent: 4096, algbw: 1e6, members: 2 }, events: [] },
    memberEvents: [],
    syncs: [{ at: 1000, round: 3, bytes: 5000, ms: 20, donors: 1 }],
    training: { step: 10, epoch: 0, epochs: 2, epochProgress: 0.1, stepsPerEpoch: 100, loss: 1.25, accuracy: null, testLoss: null, samplesPerSec: 640, weightsHash: 'abcd' },
    backend: 'wasm',
    ...over
  } as PeerStatus
}

test('metrics follow the status; counters grow; per-round figures appear once rounds are reported', async () => {
  let current = status()
  let samples = 640
  const metrics = new OpsMetrics({ status: () => current, samples: () => samples })
  let m = parsePrometheus(await metrics.render())
  assert.equal(valueOf(m.samples, 'peer_training_step'), 10)
  assert.equal(valueOf(m.samples, 'peer_training_loss'), 1.25)
  assert.equal(valueOf(m.samples, 'peer_test_accuracy'), undefined, 'no evaluation yet: no sample rather than a made-up 0')
  assert.equal(valueOf(m.samples, 'peer_state', { state: 'training' }), 1)
  assert.equal(valueOf(m.samples, 'peer_state', { state: 'done' }), 0)
  assert.equal(valueOf(m.samples, 'peer_members', { state: 'live' }), 2)
  assert.equal(valueOf(m.samples, 'peer_members', { state: 'dead' }), 1)
  assert.equal(valueOf(m.samples, 'peer_members_live'), 2)
  assert.equal(valueOf(m.samples, 'peer_shards_owned'), 6)
  assert.equal(valueOf(m.samples, 'peer_shards'), 12)
  assert.equal(m.types.get('peer_shards_total'), undefined, 'a gauge is not named as a counter')
  assert.equal(valueOf(m.samples, 'peer_ring_last_round_seconds'), 0.0125)
  assert.equal(valueOf(m.samples, 'peer_ring_rounds_aborted_total'), 1)
  assert.equal(valueOf(m.samples, 'peer_state_syncs_total'), 1)
  assert.equal(valueOf(m.samples, 'peer_state_sync_bytes_total'), 5000)
  assert.equal(valueOf(m.samples, 'peer_training_samples_total'), 640)
  assert.equal(m.types.get('peer_ring_rounds_total'), 'counter')
  assert.equal(valueOf(m.samples, 'peer_ring_bytes_sent_total'), undefined)

  current = status({
    state: 'reducing',
    training: { ...status().training!, step: 20, loss: 0.5, accuracy: 0.91, testLoss: 0.3 },
    ring: { ...status().ring, completed: 20 },
    syncs: [{ at: 1000, round: 3, bytes: 5000, ms: 20, donors: 1 }, { at: 2000, round: 15, bytes: 7000, ms: 20, donors: 2 }]
  })
  samples = 1280
  metrics.observeRound({ round: 19, ms: 20, bytesSent: 4000, bytesReceived: 4100, algbw: 1e6, members: 2 })
  metrics.observeRound({ round: 20, ms: 30, bytesSent: 4000, bytesReceived: 0, algbw: 1e6, members: 2 })
  m = parsePrometheus(await metrics.render())
  assert.equal(valueOf(m.samples, 'peer_training_step'), 20)
  assert.equal(valueOf(m.samples, 'peer_test_accuracy'), 0.91)
  assert.equal(valueOf(m.samples, 'peer_ring_rounds_total'), 20)
  assert.equal(valueOf(m.samples, 'peer_state', { state: 'reducing' }), 1)
  assert.equal(valueOf(m.samples, 'peer_state_syncs_total'), 2, 'each state sync counted once')
  assert.equal(valueOf(m.samples, 'peer_state_sync_bytes_total'), 12_000)
  assert.equal(valueOf(m.samples, 'peer_ring_bytes_sent_total'), 8000)
  assert.equal(valueOf(m.samples, 'peer_ring_round_seconds_count'), 2)
  assert.equal(valueOf(m.samples, 'peer_ring_round_seconds_bucket', { le: '0.025' }), 1)
  assert.equal(m.types.get('peer_ring_round_seconds'), 'histogram')
})

test('libp2p\'s own metrics join the scrape without a name clash', async () => {
  const registry = new Registry()
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // what node/network passes (see the ops wiring notes): its own registry, the process metrics left to ours
    metrics: prometheusMetrics({ registry, collectDefaultMetrics: false })
  })
  const other = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  try {
    await other.dial(node.getMultiaddrs()[0])
    const metrics = new OpsMetrics({ status: () => status(), samples: () => null, extra: () => [registry] })
    const m = parsePrometheus(await metrics.render())
    assert.ok(m.samples.some(s => s.name.startsWith('libp2p_')), 'libp2p metrics are there')
    assert.ok(m.samples.some(s => s.name === 'process_cpu_seconds_total'))
    assert.ok(m.samples.some(s => s.name === 'peer_training_step'))
    for (const [name, type] of m.types) assert.ok(type === 'counter' || !name.endsWith('_total'), `${name} is a ${type} named as a counter`)
  } finally {
    await other.stop()
    await node.stop()
  }
})

test('non-counters named …_total are renamed whole: HELP, TYPE and every series; counters are left alone', () => {
  const text = [
    '# HELP a_total A gauge named as a counter', '# TYPE a_total gauge', 'a_total{x="1"} 1', 'a_total{x="2"} 2',
    '# HELP b_total A counter', '# TYPE b_total counter', 'b_total 3',
    '# HELP c A gauge', '# TYPE c gauge', 'c 4',
    '# HELP c_total Another gauge whose plain name is taken', '# TYPE c_total gauge', 'c_total 5',
    '# HELP h_total A histogram', '# TYPE h_total histogram', 'h_total_bucket{le="+Inf"} 1', 'h_total_sum 0.5', 'h_total_count 1', ''
  ].join('\n')
  const m = parsePrometheus(withoutTotalOnNonCounters(text))
  assert.deepEqual([...m.types], [['a', 'gauge'], ['b_total', 'counter'], ['c', 'gauge'], ['c_current', 'gauge'], ['h', 'histogram']])
  assert.equal(valueOf(m.samples, 'a', { x: '2' }), 2)
  assert.equal(valueOf(m.samples, 'b_total'), 3)
  assert.equal(valueOf(m.samples, 'c'), 4)
  assert.equal(valueOf(m.samples, 'c_current'), 5)
  assert.equal(valueOf(m.samples, 'h_count'), 1)
  assert.match(withoutTotalOnNonCounters(text), /^# HELP a A gauge named as a counter$/m)
  assert.equal(withoutTotalOnNonCounters('# TYPE b_total counter\nb_total 1\n'), '# TYPE b_total counter\nb_total 1\n')
})

test('promtool check metrics passes on the whole scrape, libp2p\'s metrics included', async (t) => {
  if (promtoolCheck('') === null) {
    t.skip(NO_PROMTOOL)
    return
  }
  const registry = new Registry()
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    metrics: prometheusMetrics({ registry, collectDefaultMetrics: false })
  })
  const other = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  try {
    await other.dial(node.getMultiaddrs()[0])
    const metrics = new OpsMetrics({ status: () => status(), samples: () => 640, extra: () => [registry] })
    metrics.observeRound({ round: 9, ms: 12.5, bytesSent: 4096, bytesReceived: 4096, algbw: 1e6, members: 2 })
    const text = await metrics.render()
    assert.ok(text.includes('libp2p_tcp_inbound_connections{'), 'libp2p\'s gauge named as a counter is there, renamed')
    const r = promtoolCheck(text)!
    assert.equal(r.problems, '', 'promtool has nothing to say')
    assert.equal(r.code, 0)
  } finally {
    await other.stop()
    await node.stop()
  }
})

test('the loss history keeps its whole shape in bounded memory', () => {
  const h = new TrainingHistory(100)
  for (let step = 1; step <= 1000; step++) h.sample({ t: step, step, loss: 1 / step, samplesPerSec: 1 })
  h.sample({ t: 1001, step: 1000, loss: 0, samplesPerSec: 1 })
  const { training } = h.snapshot()
  assert.ok(training.length <= 100)
  assert.equal(training[0].step, 1, 'the first point is kept')
  assert.equal(training[training.length - 1].step, 1000, 'the newest point is kept; a repeat of its step is not added')
  assert.ok(training.every((p, i) => i === 0 || p.step > training[i - 1].step))
})

test('added routes need the token; a page route trades it from the query for a GET-only session cookie', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'peer-api-'))
  const api = new ApiServer({ status: () => ({ ok: 1 }), stop: () => {} }, { dataDir })
  const info = await api.start()
  try {
    const remove = api.route('GET', '/page', () => ({ body: '<p>hi</p>', contentType: 'text/html' }), { tokenInQuery: true })
    api.route('GET', '/data', () => ({ json: { x: 1 } }))
    api.route('POST', '/fail', () => { throw Object.assign(new Error('not yet'), { status: 503 }) })
    assert.throws(() => api.route('GET', '/status', () => ({ json: null })), /built in/)
    assert.throws(() => api.route('POST', '/x', () => ({ json: null }), { tokenInQuery: true }), /only GET/)
    const get = async (path: string, auth = true, method = 'GET'): Promise<Response> =>
      await fetch(`${info.url}${path}`, { method, headers: auth ? { authorization: `Bearer ${info.token}` } : {} })
    assert.equal((await get('/data', false)).status, 401)
    assert.equal((await get(`/data?token=${info.token}`, false)).status, 401, 'no query token for a JSON route')
    assert.equal((await get(`/status?token=${info.token}`, false)).status, 401, 'nor for the built-in ones')
    assert.deepEqual(await (await get('/data')).json(), { x: 1 })
    assert.equal((await get('/page', false)).status, 401)
    assert.equal((await get('/page?token=0123abcd', false)).status, 401)
    // the token in a page's link is traded for a session cookie and a redirect to the address without it
    const traded = await fetch(`${info.url}/page?view=ring&token=${info.token}`, { redirect: 'manual' })
    assert.equal(traded.status, 303)
    assert.equal(traded.headers.get('location'), '/page?view=ring')
    const setCookie = traded.headers.get('set-cookie') ?? ''
    const port = new URL(info.url).port
    assert.match(setCookie, new RegExp(`^peer_session_${port}=[0-9a-f]{64}; Path=/; HttpOnly; SameSite=Strict$`))
    const cookie = setCookie.split(';')[0]
    assert.ok(!cookie.includes(info.token), 'the cookie is not the API token')
    const withCookie = async (path: string, value = cookie, method = 'GET'): Promise<Response> =>
      await fetch(`${info.url}${path}`, { method, headers: { cookie: `other=1; ${value}` }, redirect: 'manual' })
    const page = await withCookie('/page?view=ring')
    assert.equal(page.status, 200)
    assert.equal(page.headers.get('content-type'), 'text/html')
    assert.equal(await page.text(), '<p>hi</p>')
    assert.deepEqual(await (await withCookie('/data')).json(), { x: 1 }, 'the page\'s own GET requests authenticate with the cookie')
    assert.deepEqual(await (await withCookie('/status')).json(), { ok: 1 })
    assert.equal((await withCookie('/fail', cookie, 'POST')).status, 401, 'the cookie is for GET requests only')
    assert.equal((await withCookie('/data', `${cookie.split('=')[0]}=${'0'.repeat(64)}`)).status, 401, 'a wrong cookie')
    assert.equal((await withCookie('/data', `peer_session_1=${cookie.split('=')[1]}`)).status, 401, 'another port\'s cookie name')
    assert.equal((await withCookie('/data', `${cookie.split('=')[0]}=${info.token}`)).status, 401, 'the token is no cookie')
    const fail = await get('/fail', true, 'POST')
    assert.equal(fail.status, 503)
    assert.deepEqual(await fail.json(), { error: 'not yet' })
    assert.deepEqual(await (await get('/status')).json(), { ok: 1 }, '/status as before')
    remove()
    assert.equal((await get('/page')).status, 404)
  } finally {
    await api.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
})
