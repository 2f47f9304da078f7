/**
 * Data jobs with real processes: the built-in spam job reaches 0.95, and an
 * imported data set held by one peer only is fetched by the other, which
 * checks every shard's hash and trains on it with the swarm.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import { LOCAL, LocalSwarm } from './helpers/swarm.ts'

test('the spam job (SpamAssassin, hashed n-grams) trains to at least 0.95 test accuracy', async () => {
  const dir = await tempDir()
  try {
    const r = await runPeer(['start', '--data-dir', join(dir.path, 'p'), ...LOCAL, '--dataset', 'spam', '--hidden', '32', '--epochs', '2', '--exit-when-done'], { timeoutMs: 180_000 })
    assert.equal(r.code, 0, r.stderr.slice(-2000))
    const m = /done: .* test accuracy ([0-9.]+)/.exec(r.stdout)
    assert.ok(m !== null, r.stdout)
    assert.ok(Number(m[1]) >= 0.95, `accuracy ${m[1]}`)
  } finally {
    await dir.remove()
  }
})

test('2 peers, one holding an imported data set: the other fetches its shards (hash-checked, R = 2: all of them) and both train', async () => {
  const swarm = await LocalSwarm.create()
  try {
    const rows = ['x1,x2,colour,label']
    for (let i = 0; i < 3000; i++) {
      const x1 = ((i * 7919) % 1000) / 100
      const x2 = ((i * 104729) % 997) / 100
      rows.push(`${x1},${x2},${['red', 'green', 'blue'][i % 3]},${x1 + x2 > 10 ? 'high' : 'low'}`)
    }
    const csv = join(swarm.root, 'points.csv')
    writeFileSync(csv, `${rows.join('\n')}\n`)
    const imported = await runPeer(['dataset', 'import', csv, '--label', 'label', '--shards', '4', '--json', '--data-dir', swarm.dataDir('holder')])
    assert.equal(imported.code, 0, imported.stderr)
    const { datasetId } = JSON.parse(imported.stdout) as { datasetId: string }
    await swarm.start('holder', ['--dataset', datasetId, '--hidden', '16', '--epochs', '30', '--min-peers', '2', '--progress-every', '600'])
    await swarm.start('other', ['--min-peers', '2', '--progress-every', '600'], 'holder')
    const both = await waitFor('both peers to train on the imported data set', async () => {
      const all = await swarm.statuses(['holder', 'other'])
      return all !== undefined && all.every(s => (s.ring?.completed ?? 0) >= 5 && s.job?.dataset === datasetId) ? all : undefined
    }, 90_000)
    assert.equal(both[1].job?.id, both[0].job?.id)
    // the fetched copy lists the same shards with the same hashes; with R = 2 of 2 peers, each holds every shard
    // (the replicas may still be on their way once training runs: the owned shards come first)
    const sets = await waitFor('every shard on both peers', async () => {
      const listed = await Promise.all(['holder', 'other'].map(async n => await runPeer(['dataset', 'ls', '--json', '--data-dir', swarm.dataDir(n)])))
      const all = listed.map(l => (JSON.parse(l.stdout) as Array<Record<string, unknown>>).map(({ dir: _dir, copies: _copies, belowReplicas: _below, ...rest }) => rest))
      return all[1][0]?.shardsPresent === all[0][0]?.shardsPresent ? all : undefined
    }, 30_000)
    assert.deepEqual(sets[1], sets[0])
    assert.equal(sets[1][0].held, 4, 'every shard arrived')
  } finally {
    await swarm.stopAll()
  }
})
