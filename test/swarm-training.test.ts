/**
 * Three real peer processes train MNIST together: synchronous all-reduce
 * (H = 1) and local steps with averaged deltas (H > 1). Both reach the
 * accuracy of one machine and end with identical weights on every peer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LocalSwarm } from './helpers/swarm.ts'

async function trainSwarm (job: string[], n = 3, everyPeer: string[] = []): Promise<Array<{ accuracy: number, hash: string, stdout: string }>> {
  const swarm = await LocalSwarm.create()
  try {
    const common = ['--exit-when-done', '--min-peers', String(n), '--progress-every', '60', ...everyPeer]
    await swarm.start('p1', [...common, ...job])
    for (let i = 2; i <= n; i++) await swarm.start(`p${i}`, common, 'p1')
    const results = await Promise.all(swarm.peers.map(async p => await p.proc.exited(240_000)))
    // every peer's end, not only the first one's: a peer that waits often waits for another that failed
    const ends = results.map((r, i) => `peer ${i + 1}: code ${r.code}, signal ${r.signal}; stdout: ${r.stdout.slice(-1500)}; stderr: ${r.stderr.slice(-2000)}`).join('\n')
    return results.map((r, i) => {
      assert.equal(r.code, 0, `peer ${i + 1} did not exit cleanly\n${ends}`)
      const m = /done: \d+ epochs, step \d+, test accuracy ([0-9.]+), weights ([0-9a-f]+)/.exec(r.stdout)
      assert.ok(m !== null, `peer ${i + 1} printed its result:\n${r.stdout.slice(-1000)}`)
      return { accuracy: Number(m[1]), hash: m[2], stdout: r.stdout }
    })
  } finally {
    await swarm.stopAll()
  }
}

test('3 peers with a synchronous all-reduce every step reach 0.94 with identical weights', async (t) => {
  const results = await trainSwarm(['--epochs', '6'])
  assert.equal(new Set(results.map(r => r.hash)).size, 1, `weights hashes: ${results.map(r => r.hash).join(' ')}`)
  for (const r of results) assert.ok(r.accuracy >= 0.94, `accuracy ${r.accuracy}`)
  t.diagnostic(`accuracy ${results[0].accuracy}`)
})

test('3 peers averaging deltas every 10 local steps (DiLoCo) reach 0.94 with identical weights', async (t) => {
  // 7 epochs, one more than the synchronous run: with 10 local steps between averages it ended 6 epochs at
  // 0.9393 once (in a fresh-clone CI run), the members' timing deciding which rows each trained when
  const results = await trainSwarm(['--epochs', '7', '--sync-every', '10'])
  assert.equal(new Set(results.map(r => r.hash)).size, 1, `weights hashes: ${results.map(r => r.hash).join(' ')}`)
  for (const r of results) assert.ok(r.accuracy >= 0.94, `accuracy ${r.accuracy}`)
  t.diagnostic(`accuracy ${results[0].accuracy}`)
})

test('2 peers computing their gradients in worker threads (--compute worker) reach 0.92 with identical weights', async (t) => {
  // 3 epochs ended between 0.927 and 0.942 in about 70 runs, 2 at a time (2026-12-04; the members' timing decides which rows
  // each trains when): 0.93 failed 2 of them, so the bar sits under that spread, still far above a broken step's
  const results = await trainSwarm(['--epochs', '3'], 2, ['--backend', 'wasm', '--compute', 'worker'])
  assert.equal(new Set(results.map(r => r.hash)).size, 1, `weights hashes: ${results.map(r => r.hash).join(' ')}`)
  for (const r of results) {
    assert.ok(r.accuracy >= 0.92, `accuracy ${r.accuracy}`)
    assert.match(r.stdout, /backend wasm \(gradients in a worker thread\)/)
  }
  t.diagnostic(`accuracy ${results[0].accuracy}`)
})

test('2 peers whose all-reduce carries bf16 (--compression bf16) reach 0.92 with identical weights', async (t) => {
  // the same job as the worker test's: 3 epochs; bfloat16 sums cost it no accuracy that shows (0.935-0.939 in 4 runs here, 2026-12-04)
  const results = await trainSwarm(['--epochs', '3', '--compression', 'bf16'], 2)
  assert.equal(new Set(results.map(r => r.hash)).size, 1, `weights hashes: ${results.map(r => r.hash).join(' ')}`)
  for (const r of results) assert.ok(r.accuracy >= 0.92, `accuracy ${r.accuracy}`)
  t.diagnostic(`accuracy ${results[0].accuracy}`)
})
