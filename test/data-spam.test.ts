/**
 * The built-in `spam` data set (SpamAssassin corpus, hashed n-grams): the
 * expected shape, a fixed split, quick to load; and a real `peer start` job on
 * it reaches 0.95 test accuracy (a small MLP, a few seconds).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadDataset } from '../node/data/dataset.ts'
import { SPAM_BUCKETS } from '../node/data/spam.ts'
import { runPeer, tempDir } from './helpers/peer-process.ts'

test('spam loads with the expected shape, split and features', () => {
  const started = performance.now()
  const d = loadDataset('spam')
  const ms = performance.now() - started
  assert.equal(d.name, 'spam')
  assert.equal(d.classes, 2)
  assert.equal(d.features, SPAM_BUCKETS)
  assert.deepEqual(d.inputShape, [SPAM_BUCKETS])
  assert.equal(d.train.n + d.test.n, 6046)
  assert.equal(d.test.n, Math.round(6046 * 0.15))
  const train = d.train.examples
  assert.ok(train !== null, 'in memory')
  assert.equal(train.x.length, d.train.n * d.features)
  const spam = train.y.reduce((a, b) => a + b, 0) + d.test.y.reduce((a, b) => a + b, 0)
  assert.equal(spam, 1896)
  // every e-mail has words, and its vector has unit L2 norm
  for (const r of [0, 1, 100, d.train.n - 1]) {
    let norm = 0
    for (let i = 0; i < d.features; i++) norm += train.x[r * d.features + i] ** 2
    assert.ok(Math.abs(norm - 1) < 1e-4, `row ${r}: norm² ${norm}`)
  }
  assert.ok(ms < 15_000, `loading took ${ms.toFixed(0)} ms`)
  // loaded once per process
  const again = performance.now()
  assert.equal(loadDataset('spam'), d)
  assert.ok(performance.now() - again < 50)
})

test('the spam job trains to at least 0.95 test accuracy', async () => {
  const dir = await tempDir()
  try {
    const r = await runPeer(['start', '--dataset', 'spam', '--hidden', '32', '--epochs', '2', '--exit-when-done',
      '--data-dir', dir.path, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns'], { timeoutMs: 120_000 })
    assert.equal(r.code, 0, r.stderr)
    const m = /^done: .*test accuracy ([\d.]+)/m.exec(r.stdout)
    assert.ok(m !== null, r.stdout)
    assert.ok(Number(m[1]) >= 0.95, `test accuracy ${m[1]}`)
  } finally {
    await dir.remove()
  }
})
