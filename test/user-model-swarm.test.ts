/**
 * A Keras-style model written with stock TF.js (conv + batch norm + dropout +
 * dense, softmax out), saved as model.save writes it, trained from its
 * model.json on MNIST by 2 real peer processes: the joiner fetches the model
 * from the first over /peer/model/1.0.0, both reach 0.97 test accuracy with
 * identical weights (batch-norm statistics included), and `peer export`
 * writes a model that stock `tf.loadLayersModel` loads and that scores the
 * same accuracy.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { loadDataset } from '../node/data/index.ts'
import { selectBackend } from '../node/trainer/index.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'
import { runPeer, waitFor } from './helpers/peer-process.ts'
import { fileHandler, kerasStyleCnn, saveToDir } from './helpers/layers-model.ts'

test('2 peers train a stock TF.js conv + batch-norm + dropout model from its model.json to 0.97 with identical weights; its export loads in stock TF.js and scores the same', async (t) => {
  const swarm = await LocalSwarm.create()
  try {
    const modelJson = await saveToDir(kerasStyleCnn(), join(swarm.root, 'keras-style'), { weights: false })
    const common = ['--min-peers', '2', '--progress-every', '60']
    // 10 epochs at lr 0.002: on this 8,500-row split 6 epochs at 0.003 ended anywhere from 0.967 to 0.979 (which shards each peer
    // claims first varies), too near the bar; 8 epochs ended at 0.979-0.982 in 3 runs, but at 0.9693 in a fresh-clone CI run
    await swarm.start('p1', [...common, '--model', modelJson, '--epochs', '10', '--batch-size', '32', '--lr', '0.002', '--shards', '8'])
    await swarm.start('p2', common, 'p1')
    // their own output says when the job is done (no status process per poll: they cost the peers CPU)
    await waitFor('both peers to finish the job', () => {
      for (const p of swarm.peers) {
        if (p.proc.child.exitCode !== null) throw new Error(`${p.name} exited ${p.proc.child.exitCode}: ${p.proc.stderr.slice(-2000)}`)
      }
      return swarm.peers.every(p => /\ndone: \d+ epochs/.test(p.proc.stdout)) ? true : undefined
    }, 240_000, 250)
    const [a, b] = await waitFor('both statuses', async () => {
      const all = await swarm.statuses(['p1', 'p2'])
      return all?.every(s => s.state === 'done') === true ? all : undefined
    }) as [StatusJson, StatusJson]
    assert.match(a.job?.dataset ?? '', /^mnist$/)
    assert.equal(a.job?.id, b.job?.id)
    // the joiner got the model from the swarm
    const stored = readdirSync(join(swarm.dataDir('p2'), 'models')).filter(n => n.startsWith('mdl-'))
    assert.equal(stored.length, 1)
    assert.equal(a.training?.weightsHash, b.training?.weightsHash, 'identical weights (moving statistics included) on both peers')
    const accuracy = a.training?.accuracy ?? 0
    t.diagnostic(`test accuracy ${accuracy}`)
    assert.ok(accuracy >= 0.97, `test accuracy ${accuracy}`)
    assert.equal(b.training?.accuracy, accuracy)

    const out = join(swarm.root, 'exported')
    const r = await runPeer(['export', out, '--data-dir', swarm.dataDir('p1'), '--json'])
    assert.equal(r.code, 0, r.stderr)
    const written = JSON.parse(r.stdout) as { weightsHash: string }
    assert.equal(written.weightsHash, a.training?.weightsHash)

    // stock TF.js, as tf.loadLayersModel('file://…') reads it with tfjs-node, on the peers' backend
    await selectBackend('wasm')
    const model = await tf.loadLayersModel(fileHandler(join(out, 'model.json')))
    const test = loadDataset('mnist').test
    const predicted = tf.tidy(() => {
      const x = tf.reshape(tf.tensor2d(test.x, [test.n, test.features]), [test.n, 28, 28, 1])
      return tf.argMax(model.predict(x) as tf.Tensor, 1).dataSync()
    })
    let correct = 0
    for (let i = 0; i < test.n; i++) if (predicted[i] === test.y[i]) correct++
    model.dispose()
    // the same accuracy (one row of slack: the export ends in the softmax, which can round two close logits to a tie)
    assert.ok(Math.abs(correct / test.n - accuracy) <= 1 / test.n + 1e-9, `exported model scores ${correct / test.n}, the peers ${accuracy}`)
  } finally {
    await swarm.stopAll()
  }
})
