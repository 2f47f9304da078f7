/**
 * Operations on a real 3-peer swarm (`peer start` processes on loopback):
 * /metrics parses as Prometheus text, moves as training moves and passes `promtool check metrics`;
 * `peer status --swarm` lists every live member; `--watch` refreshes; the
 * dashboard in headless Chromium trades its link's token for a cookie,
 * shows the peers, its curve advances, two members' ring links are drawn
 * apart (and it leaves docs/dashboard.png); an exported model loads with
 * TensorFlow.js and reproduces the peer's test accuracy; `peer eval` agrees.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { ApiClient } from '../node/api/client.ts'
import { loadDataset } from '../node/data/dataset.ts'
import type { SwarmView } from '../node/ops/types.ts'
import { ROOT, runPeer, spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import type { PeerChild } from './helpers/peer-process.ts'
import type { StatusJson } from './helpers/swarm.ts'
import { NO_PROMTOOL, parsePrometheus, promtoolCheck, valueOf } from './ops-prometheus.ts'

/**
 * A small, quick job: 3 peers finish it in seconds, slow enough for the dashboard to watch it move (rounds in a
 * reused group take milliseconds: 2 epochs could end before a browser has drawn two points).
 */
const EPOCHS = 10
const JOB = ['--epochs', String(EPOCHS), '--hidden', '32', '--batch-size', '32', '--shards', '12', '--seed', '7']
const LIVENESS = ['--heartbeat-ms', '500', '--member-timeout', '4000', '--min-peers', '3']
const LOCAL = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--progress-every', '60']
const NAMES = ['a', 'b', 'c']
const CHROMIUM = '/usr/bin/chromium'
/** The page's document, in the functions Playwright runs in the browser (this project type-checks without the DOM lib). */
declare const document: any
const SCREENSHOT = join(ROOT, 'docs', 'dashboard.png')

let root: { path: string, remove: () => Promise<void> }
const procs = new Map<string, PeerChild>()
const ids = new Map<string, string>()
const dataDir = (name: string): string => join(root.path, name)

async function statusOf (name: string): Promise<StatusJson | undefined> {
  const r = await runPeer(['status', '--json', '--data-dir', dataDir(name)], { timeoutMs: 20_000 })
  return r.code === 0 ? JSON.parse(r.stdout) as StatusJson : undefined
}

async function client (name: string): Promise<ApiClient> {
  return await ApiClient.fromDataDir(dataDir(name))
}

/** The arguments `peer start` printed for others to join it (a join token, or --open and an address). */
async function joinArgs (first: PeerChild): Promise<string[]> {
  const line = await waitFor('the first peer to say how to join it', () =>
    first.stdout.split('\n').find(l => /^\s+peer start .*--join /.test(l)), 60_000)
  return line.trim().split(/\s+/).slice(2)
}

before(async () => {
  root = await tempDir('peer-ops-')
  procs.set('a', spawnPeer(['start', '--data-dir', dataDir('a'), ...LOCAL, ...LIVENESS, ...JOB]))
  const join = await joinArgs(procs.get('a')!)
  for (const name of NAMES.slice(1)) procs.set(name, spawnPeer(['start', '--data-dir', dataDir(name), ...LOCAL, ...LIVENESS, ...join]))
  const all = await waitFor('3 peers training together', async () => {
    const s = await Promise.all(NAMES.map(statusOf))
    if (s.some(x => x === undefined)) return undefined
    const ok = s.every(x => x!.members.filter(m => m.live).length === 3 && (x!.training?.step ?? 0) > 0)
    return ok ? s as StatusJson[] : undefined
  }, 60_000)
  all.forEach((s, i) => ids.set(NAMES[i], s.peerId))
})

after(async () => {
  for (const p of procs.values()) p.child.kill('SIGKILL')
  await Promise.all([...procs.values()].map(async p => await p.exited(10_000).catch(() => {})))
  await root?.remove()
})

test('GET /metrics is Prometheus text and moves as training moves', async () => {
  const api = await client('a')
  const first = parsePrometheus(await api.metrics())
  assert.equal(first.types.get('peer_training_step'), 'gauge')
  assert.equal(first.types.get('peer_ring_rounds_total'), 'counter')
  assert.equal(valueOf(first.samples, 'peer_members_live'), 3)
  assert.equal(valueOf(first.samples, 'peer_info', { peer_id: ids.get('a')! }), 1)
  assert.ok(valueOf(first.samples, 'process_cpu_seconds_total') !== undefined, 'process metrics')
  for (const metric of ['peer_training_loss', 'peer_training_samples_per_second', 'peer_ring_last_round_seconds', 'peer_ring_last_round_bytes_sent', 'peer_shards_owned', 'peer_ring_rounds_aborted_total']) {
    assert.ok(valueOf(first.samples, metric) !== undefined, `${metric} is there`)
  }
  const step0 = valueOf(first.samples, 'peer_training_step')!
  const rounds0 = valueOf(first.samples, 'peer_ring_rounds_total')!
  const samples0 = valueOf(first.samples, 'peer_training_samples_total')!
  const nan = first.samples.filter(s => Number.isNaN(s.value)).map(s => s.name)
  assert.ok(nan.every(n => !n.startsWith('peer_')), `peer metrics are numbers: ${nan.join(', ')}`)
  const later = await waitFor('training to move the metrics', async () => {
    const m = parsePrometheus(await api.metrics())
    return valueOf(m.samples, 'peer_training_step')! > step0 + 5 ? m : undefined
  }, 30_000)
  assert.ok(valueOf(later.samples, 'peer_ring_rounds_total')! > rounds0)
  assert.ok(valueOf(later.samples, 'peer_training_samples_total')! > samples0)
  assert.ok(valueOf(later.samples, 'peer_ring_last_round_bytes_sent')! > 0, 'a 3-member round sends bytes')
  // the shards are split among the members: every peer's count adds up to the total
  const owned = await Promise.all(NAMES.map(async n => valueOf(parsePrometheus(await (await client(n)).metrics()).samples, 'peer_shards_owned')!))
  assert.equal(owned.reduce((a, b) => a + b, 0), 12)
  // libp2p's own metrics, where the network was created with a metrics registry
  if (later.samples.some(s => s.name.startsWith('libp2p_'))) assert.ok(later.types.size > 60)
  // the token is required
  const res = await fetch(`${api.info.url}/metrics`)
  assert.equal(res.status, 401)
})

test('promtool check metrics passes on every peer\'s live /metrics', async (t) => {
  if (promtoolCheck('') === null) {
    t.skip(NO_PROMTOOL)
    return
  }
  for (const name of NAMES) {
    const text = await (await client(name)).metrics()
    const m = parsePrometheus(text)
    assert.ok(m.samples.some(s => s.name.startsWith('libp2p_')) && valueOf(m.samples, 'peer_ring_rounds_total')! > 0, 'a scrape with libp2p\'s metrics and rounds')
    const r = promtoolCheck(text)!
    assert.equal(r.problems, '', `promtool on peer ${name}'s /metrics`)
    assert.equal(r.code, 0)
  }
})

test('peer status times the last rounds: the round as the trainer waits for it, the ring\'s own, the rounds\' overhead', async () => {
  const s = await waitFor('rounds timed on b', async () => {
    const x = await statusOf('b')
    return (x?.ring?.timing?.rounds ?? 0) >= 10 ? x : undefined
  }, 30_000)
  const t = s!.ring!.timing!
  assert.ok(t.rounds <= 256, `a window of at most 256 rounds: ${t.rounds}`)
  assert.ok(t.ringP50Ms > 0 && t.p50Ms >= t.ringP50Ms, `a round takes at least the ring's time: ${JSON.stringify(t)}`)
  assert.ok(t.p50Ms <= t.p90Ms && t.p90Ms <= t.p99Ms, `quantiles in order: ${JSON.stringify(t)}`)
  assert.ok(t.overheadP50Ms >= 0 && t.overheadP50Ms <= t.p50Ms, `the overhead is part of the round: ${JSON.stringify(t)}`)
})

test('peer status --swarm lists every live member', async () => {
  const r = await runPeer(['status', '--swarm', '--json', '--data-dir', dataDir('b')], { timeoutMs: 20_000 })
  assert.equal(r.code, 0, r.stderr)
  const view = JSON.parse(r.stdout) as SwarmView
  assert.deepEqual(view.members.map(m => m.peerId).sort(), [...ids.values()].sort())
  assert.ok(view.members.every(m => m.reachable && m.status !== null), JSON.stringify(view.members.map(m => m.error)))
  assert.equal(view.members.find(m => m.self)?.peerId, ids.get('b'))
  assert.ok(view.members.every(m => m.status!.jobId === view.members[0].status!.jobId))
  const text = await runPeer(['status', '--swarm', '--data-dir', dataDir('b')], { timeoutMs: 20_000 })
  assert.equal(text.code, 0, text.stderr)
  const lines = text.stdout.split('\n')
  assert.match(lines[0], /PEER +STATE +STEP .*LOSS .*SHARDS .*LAST ROUND .*WEIGHTS/)
  for (const id of ids.values()) assert.ok(lines.some(l => l.includes(id.slice(0, 6)) && l.includes(id.slice(-6))), `a row for ${id}`)
  assert.match(text.stdout, /3 live members, 3 answered/)
})

test('peer status --watch refreshes until interrupted', async () => {
  const counted = await runPeer(['status', '--watch', '--interval', '0.3', '--count', '3', '--data-dir', dataDir('a')], { timeoutMs: 20_000 })
  assert.equal(counted.code, 0, counted.stderr)
  assert.equal(counted.stdout.match(/^--- \d{4}-/gm)?.length, 3, 'three refreshes (off a terminal: one block each)')
  assert.match(counted.stdout, /dashboard http:\/\/127\.0\.0\.1:\d+\/dashboard\?token=[0-9a-f]+/)
  const watch = spawnPeer(['status', '--watch', '--swarm', '--json', '--interval', '0.3', '--data-dir', dataDir('a')])
  await waitFor('two refreshes', () => (watch.stdout.split('\n').filter(l => l.startsWith('{')).length >= 2 ? true : undefined), 20_000)
  watch.child.kill('SIGINT')
  const end = await watch.exited(10_000)
  assert.equal(end.code, 0, end.stderr)
  for (const line of end.stdout.trim().split('\n')) assert.equal((JSON.parse(line) as SwarmView).members.length, 3)
})

test('the dashboard shows the peers and its curves advance (headless Chromium)', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is not installed (apt-get install chromium; .ci/run does): the dashboard is not tested in a browser`)
    return
  }
  const { chromium } = await import('playwright-core')
  const api = await client('a')
  const profile = await mkdtemp(join(tmpdir(), 'peer-chromium-'))
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 }
  })
  const errors: string[] = []
  try {
    const page = browser.pages()[0] ?? await browser.newPage()
    page.on('pageerror', err => { errors.push(err.message) })
    // without the token: refused
    const refused = await page.goto(`${api.info.url}/dashboard`)
    assert.equal(refused?.status(), 401)
    // the link's token is traded for a session cookie, with a redirect to the address without it
    const res = await page.goto(`${api.info.url}/dashboard?token=${api.info.token}`)
    assert.equal(res?.status(), 200)
    assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'none'/)
    const redirect = await res?.request().redirectedFrom()?.response()
    assert.equal(redirect?.status(), 303, 'a 303 to the clean address')
    assert.equal(page.url(), `${api.info.url}/dashboard`, 'the token is not in the address bar (nor in the history)')
    const cookies = await browser.cookies(api.info.url)
    assert.equal(cookies.length, 1)
    assert.equal(cookies[0].name, `peer_session_${new URL(api.info.url).port}`)
    assert.equal(cookies[0].httpOnly, true)
    assert.equal(cookies[0].sameSite, 'Strict')
    assert.notEqual(cookies[0].value, api.info.token, 'the cookie is not the API token')
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page\'s script cannot read it')
    // the members table: one row per peer, each reachable and named
    await page.waitForFunction(() => document.querySelectorAll('#members-body tr[data-peer]').length === 3 &&
      [...document.querySelectorAll('#members-body tr[data-peer] td:nth-child(2)')].every(td => /training|reducing|done/.test(td.textContent ?? '')), undefined, { timeout: 20_000 })
    const rows = await page.$$eval('#members-body tr[data-peer]', trs => trs.map(tr => tr.getAttribute('data-peer')))
    assert.deepEqual(rows.sort(), [...ids.values()].sort())
    // the ring shows the 3 members; the loss curve has points and moves on
    await page.waitForFunction(() => document.querySelectorAll('#ring-chart g.node').length === 3, undefined, { timeout: 20_000 })
    const before = await page.waitForFunction(() => {
      const svg = document.getElementById('loss-chart')
      return svg !== null && Number(svg.dataset.points) >= 2 ? Number(svg.dataset.lastStep) : false
    }, undefined, { timeout: 20_000 })
    const step0 = await before.jsonValue() as number
    await page.waitForFunction((s) => Number(document.getElementById('loss-chart')?.dataset.lastStep) > s, step0, { timeout: 20_000 })
    assert.ok(await page.$eval('#loss-chart path.series', p => (p.getAttribute('d') ?? '').split('L').length) >= 2)
    // the page's own requests carry the cookie: a reload without the token still works, and so do its fetches
    assert.equal((await page.reload())?.status(), 200)
    await page.waitForFunction(() => document.querySelectorAll('#ring-chart g.node').length === 3 && !document.getElementById('banner').classList.contains('show'), undefined, { timeout: 20_000 })
    // with two members, the ring's two links (A→B, B→A) are drawn on opposite sides, their labels apart
    const twoLinks = await page.evaluate(() => {
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
      svg.setAttribute('viewBox', '0 0 560 300')
      svg.setAttribute('width', '560')
      document.body.append(svg)
      const a = '12D3KooWAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
      const b = '12D3KooWBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
      ;(globalThis as any).ringChart(svg, [a, b], new Map([[a, 123.4e6], [b, 98.7e6]]), a)
      const boxes = [...svg.querySelectorAll('text.link')].map((t: any) => {
        const box = t.getBBox()
        return { from: t.dataset.from, text: t.textContent, x: box.x, y: box.y, w: box.width, h: box.height }
      })
      const lines = [...svg.querySelectorAll('line')].map((l: any) => Number(l.getAttribute('x1')))
      svg.remove()
      return { boxes, lines }
    }) as { boxes: Array<{ from: string, text: string, x: number, y: number, w: number, h: number }>, lines: number[] }
    assert.deepEqual(twoLinks.boxes.map(l => l.text), ['123.4 MB/s', '98.7 MB/s'])
    const [p, q] = twoLinks.boxes
    const overlap = p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h
    assert.ok(!overlap, `the two link labels do not overlap: ${JSON.stringify(twoLinks.boxes)}`)
    assert.ok(Math.abs(twoLinks.lines[0] - twoLinks.lines[1]) >= 10, `nor do the two arrows: ${JSON.stringify(twoLinks.lines)}`)
    // for the README: wait for the first test-accuracy point and a ring link figure, then take the picture
    await page.waitForFunction(() => Number(document.getElementById('accuracy-chart')?.dataset.points) >= 1, undefined, { timeout: 40_000 })
    await page.waitForFunction(() => [...document.querySelectorAll('#ring-chart text.link')].some(t => /B\/s/.test(t.textContent ?? '')), undefined, { timeout: 10_000 }).catch(() => {})
    await mkdir(join(ROOT, 'docs'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    assert.deepEqual(errors, [], 'no script errors on the page')
  } finally {
    await browser.close()
    await rm(profile, { recursive: true, force: true })
  }
})

/** Loads model.json and its weights from a directory (tfjs-node's file:// handler is not installed here). */
function fileHandler (dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON
      return await tf.io.getModelArtifactsForJSON(json, async manifest => {
        const specs: tf.io.WeightsManifestEntry[] = []
        const buffers: ArrayBuffer[] = []
        for (const group of manifest) {
          specs.push(...group.weights)
          for (const path of group.paths) {
            const b = await readFile(join(dir, path))
            buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer)
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)]
      })
    }
  }
}

test('an exported model loads with tf.loadLayersModel and reproduces the peer\'s test accuracy; peer eval agrees', async () => {
  const done = await waitFor(`the swarm to finish its ${EPOCHS} epochs`, async () => {
    const s = await Promise.all(NAMES.map(statusOf))
    return s.every(x => x?.state === 'done') ? s as StatusJson[] : undefined
  }, 90_000)
  // every member ended with the same weights, and --swarm says so
  assert.equal(new Set(done.map(s => s.training?.weightsHash)).size, 1)
  const view = await (await client('c')).swarm()
  assert.ok(view.members.every(m => m.agreement === 'agree'), JSON.stringify(view.members.map(m => [m.status?.training?.round, m.agreement])))
  const accuracy = done[0].training!.accuracy!
  assert.ok(accuracy > 0.8, `test accuracy ${accuracy}`)

  const ev = await runPeer(['eval', '--json', '--data-dir', dataDir('a')], { timeoutMs: 30_000 })
  assert.equal(ev.code, 0, ev.stderr)
  const evaluation = JSON.parse(ev.stdout) as { accuracy: number, rows: number, perClass: number[], weightsHash: string }
  assert.equal(evaluation.accuracy, accuracy, 'peer eval computes what the trainer computed at the end')
  assert.equal(evaluation.weightsHash, done[0].training!.weightsHash)
  assert.equal(evaluation.perClass.length, 10)

  const out = join(root.path, 'model')
  const ex = await runPeer(['export', out, '--data-dir', dataDir('b')], { timeoutMs: 30_000 })
  assert.equal(ex.code, 0, ex.stderr)
  assert.match(ex.stdout, /exported the model at step \d+/)
  const again = await runPeer(['export', out, '--data-dir', dataDir('b')], { timeoutMs: 30_000 })
  assert.equal(again.code, 2, 'an existing model is not replaced without --force')
  assert.match(again.stderr, /--force/)

  const model = await tf.loadLayersModel(fileHandler(out))
  const test = loadDataset('mnist').test
  assert.equal(test.n, evaluation.rows)
  const predicted = tf.tidy(() => tf.argMax(model.predict(tf.tensor2d(test.x, [test.n, test.features])) as tf.Tensor, 1).dataSync())
  let right = 0
  for (let i = 0; i < test.n; i++) if (predicted[i] === test.y[i]) right += 1
  // the same weights on another backend (the peer's wasm, this test's cpu): at most a row or two may round the other way
  assert.ok(Math.abs(right / test.n - accuracy) <= 2 / test.n, `exported model: ${right / test.n}, peer: ${accuracy}`)
  const meta = (JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as { userDefinedMetadata: { peer: { weightsHash: string } } }).userDefinedMetadata.peer
  assert.equal(meta.weightsHash, done[0].training!.weightsHash)
  model.dispose()
})
