/**
 * Big vectors (issue 14 item 4): an MLP of 28.4 M parameters (784-4096-6144-10, 113.6 MB of float32 weights)
 * trains on 2 real peers. The first trains alone for a few steps and writes checkpoints; the second joins
 * behind it and must fetch the whole 113 MB state over state sync; then both train in one ring (each round's
 * vector is the whole model) and hold identical weights. p1's checkpoint in its LevelDB decodes to the whole model.
 * Each peer's peak RSS (VmHWM) is reported.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { joinTokenOf } from '../node/security/index.ts'
import { CheckpointStore } from '../node/trainer/index.ts'
import type { BinaryStore } from '../node/trainer/index.ts'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

const HIDDEN = [4096, 6144]
const PARAMETERS = 784 * 4096 + 4096 + 4096 * 6144 + 6144 + 6144 * 10 + 10
// SGD keeps no optimizer state: the state is the weights (and the 113 MB is the model itself). A step of this
// model takes seconds of compute on a loaded 2-core machine, all of it on the peer's event loop: members are
// given longer to be silent than the default 5 s (see docs/ring.md, "Big vectors").
const JOB = ['--hidden', HIDDEN.join(','), '--optimizer', 'sgd', '--batch-size', '8', '--epochs', '1', '--lr', '0.01']
const TIMING = ['--checkpoint-every', '2', '--member-timeout', '20000', '--progress-every', '600', '--log-level', 'info']

/** The status over the peer's control API (cheaper than a `peer status` process per poll on a busy machine). */
async function statusOf (dataDir: string): Promise<StatusJson | undefined> {
  try {
    const api = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
    const res = await fetch(`${api.url}/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(10_000) })
    return res.ok ? await res.json() as StatusJson : undefined
  } catch {
    return undefined
  }
}

async function peakRssMiB (pid: number): Promise<number | null> {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m === null ? null : Math.round(Number(m[1]) / 1024)
  } catch {
    return null
  }
}

test('a 28 M-parameter model: a joiner syncs the 113 MB state, 2 peers train with identical weights, the checkpoint holds it', async t => {
  assert.ok(PARAMETERS >= 25_000_000)
  const swarm = await LocalSwarm.create()
  try {
    await swarm.start('p1', [...JOB, ...TIMING, '--min-peers', '1'])
    const first = await waitFor('p1 to train past a checkpoint', async () => {
      const s = await statusOf(swarm.dataDir('p1'))
      return s?.training != null && s.training.step >= 2 && s.addresses.length > 0 ? s : undefined
    }, 120_000, 500)

    const token = await joinTokenOf(swarm.dataDir('p1'), [first.addresses[0]])
    assert.ok(token !== null)
    await swarm.start('p2', [...TIMING, '--min-peers', '1', '--join', token])
    const synced = await waitFor('p2 to fetch the state', async () => {
      const s = await statusOf(swarm.dataDir('p2'))
      return s?.syncs.find(x => x.adopted === true && x.bytes >= PARAMETERS * 4) !== undefined ? s : undefined
    }, 120_000, 500)
    const sync = synced.syncs.find(x => x.adopted === true)!
    t.diagnostic(`state sync: ${(sync.bytes / 1e6).toFixed(1)} MB in ${sync.ms} ms from ${sync.donors} donor(s)`)

    // both in one ring: whenever both are read at the same step they hold the same weights (the rounds also
    // compare weight hashes in the ring's hello every 16 rounds); seen at two steps at least 2 rounds after the sync
    const start = Math.max(sync.round, 0)
    const matched = new Set<number>()
    const agreed = await waitFor('2 peers at the same step with the same weights, twice', async () => {
      const all = await Promise.all(['p1', 'p2'].map(async p => await statusOf(swarm.dataDir(p))))
      if (all.some(s => s?.training == null || (s.ring?.members.length ?? 0) !== 2)) return undefined
      const [a, b] = all as StatusJson[]
      if (a.training!.step !== b.training!.step || a.training!.step < start + 2) return undefined
      if (a.training!.weightsHash !== b.training!.weightsHash) return all as StatusJson[] // a difference ends the wait
      matched.add(a.training!.step)
      return matched.size >= 2 ? all as StatusJson[] : undefined
    }, 120_000, 300)
    assert.equal(agreed[0].training!.weightsHash, agreed[1].training!.weightsHash, `weights at step ${agreed[0].training!.step}`)
    const [a] = agreed
    t.diagnostic(`step ${a.training!.step}, weights ${a.training!.weightsHash}, rounds in the reused group ${a.ring?.fastRounds ?? 0}, agreed ${a.ring?.agreedRounds ?? 0}`)
    assert.ok((a.ring?.completed ?? 0) >= 3, `rounds completed: ${a.ring?.completed}`)

    const rss = await Promise.all(agreed.map(async s => await peakRssMiB(s.pid)))
    t.diagnostic(`peak RSS (VmHWM): p1 ${rss[0]} MiB, p2 ${rss[1]} MiB for a ${(PARAMETERS * 4 / 1e6).toFixed(1)} MB model`)

    // p1's newest checkpoint, read from its LevelDB once it is gone: the whole model, from a step it trained
    swarm.proc('p1').child.kill('SIGKILL')
    await swarm.proc('p1').exited()
    const db = new Level<string, unknown>(join(swarm.dataDir('p1'), 'db'), { valueEncoding: 'json' })
    try {
      const store = new CheckpointStore(db.sublevel<string, Uint8Array>('checkpoint', { valueEncoding: 'view' }) as unknown as BinaryStore)
      const ckpt = await store.load()
      assert.ok(ckpt !== null, 'p1 wrote a checkpoint')
      assert.equal(ckpt.weights.reduce((n, w) => n + w.values.length, 0), PARAMETERS)
      assert.ok(ckpt.progress.step >= 2, `checkpoint at step ${ckpt.progress.step}`)
      assert.ok(ckpt.weights.every(w => w.values.every(Number.isFinite)))
    } finally {
      await db.close()
    }
  } catch (err) {
    for (const p of swarm.peers) t.diagnostic(`${p.name} stderr: ${p.proc.stderr.slice(-3000)}`)
    throw err
  } finally {
    await swarm.stopAll().catch(() => {})
  }
})
