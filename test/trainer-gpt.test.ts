/**
 * The gpt net (node/trainer/gpt.ts): shapes, deterministic initialisation,
 * causality (no position sees a later token), autodiff gradients against
 * finite differences, and one peer's training on real text (SpamAssassin
 * e-mail bodies) to a held-out loss below the text's unigram entropy.
 */
import { before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs'
import { selectBackend } from '../node/trainer/backend.ts'
import { GPT_VOCAB, createGptNet } from '../node/trainer/gpt.ts'
import type { GptNet, GptOptions } from '../node/trainer/gpt.ts'
import { Trainer } from '../node/trainer/trainer.ts'
import { generate, loadGpt, saveGpt } from '../node/trainer/generate.ts'
import { SPAM_TEXT_CONTEXT, lmDataset, lmWindows, spamText, trailingPartial, unigramEntropyBits } from '../node/data/lm.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { jobId, parseJob } from '../protocols/job/index.ts'

function net (options: GptOptions, seed = 7): GptNet {
  return createGptNet({ preset: 'gpt', hidden: [], inputShape: [options.context + 1], classes: GPT_VOCAB, seed }, options)
}

/** Rows of random byte tokens (a fixed LCG, so every run sees the same). */
function tokens (rows: number, width: number, seed = 1): Float32Array {
  let s = seed
  return Float32Array.from({ length: rows * width }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s >>> 24
  })
}

before(async () => {
  await selectBackend('wasm')
})

describe('gpt net', () => {
  const small: GptOptions = { layers: 2, dim: 16, heads: 4, context: 8 }

  it('has the parameters of its configuration, with stable names, and logits of shape [batch · context, 256]', () => {
    const n = net(small)
    const { dim, layers, context } = small
    const perBlock = 4 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    assert.equal(n.variables.reduce((s, v) => s + v.size, 0), GPT_VOCAB * dim + context * dim + layers * perBlock + 2 * dim)
    assert.equal(n.variables[0].name.startsWith('gpt/wte'), true)
    const x = tf.tensor2d(tokens(3, context + 1), [3, context + 1])
    const logits = n.predict(x)
    assert.deepEqual(logits.shape, [3 * context, GPT_VOCAB])
    const { loss, grads } = n.lossAndGrads(x, tf.zeros([3, GPT_VOCAB]))
    assert.deepEqual(grads.map(g => g.shape), n.variables.map(v => v.shape))
    // at initialisation the model knows nothing: about ln 256 nats per token
    assert.ok(Math.abs(loss.dataSync()[0] - Math.log(GPT_VOCAB)) < 0.1, `initial loss ${loss.dataSync()[0]}`)
    tf.dispose([x, logits, loss, ...grads])
    n.dispose()
  })

  it('initialises from the seed: the same seed gives the same weights, another seed others', () => {
    const a = net(small, 11)
    const b = net(small, 11)
    const c = net(small, 12)
    const flat = (m: GptNet): number[] => m.variables.flatMap(v => Array.from(v.dataSync()))
    assert.deepEqual(flat(a), flat(b))
    assert.notDeepEqual(flat(a), flat(c))
    for (const m of [a, b, c]) m.dispose()
  })

  it('is causal: changing a token changes no prediction before it', () => {
    const n = net(small)
    const f = small.context + 1
    const x = tokens(2, f, 5)
    const y = x.slice()
    const j = 5
    y[j] = (y[j] + 1) % 256
    y[f + j] = (y[f + j] + 7) % 256
    const before = n.predict(tf.tensor2d(x, [2, f])).arraySync()
    const after = n.predict(tf.tensor2d(y, [2, f])).arraySync()
    for (let r = 0; r < 2; r++) {
      for (let t = 0; t < small.context; t++) {
        const row = r * small.context + t
        const diff = Math.max(...before[row].map((v, k) => Math.abs(v - after[row][k])))
        if (t < j) assert.equal(diff, 0, `row ${r} position ${t} changed`)
        else assert.ok(diff > 0, `row ${r} position ${t} should see token ${j}`)
      }
    }
    n.dispose()
  })

  it('has the gradient of its loss (finite differences along a random direction, per parameter tensor)', () => {
    const options: GptOptions = { layers: 1, dim: 8, heads: 2, context: 4 }
    const n = net(options, 3)
    const f = options.context + 1
    const x = tf.tensor2d(tokens(4, f, 9), [4, f])
    const y = tf.zeros([4, GPT_VOCAB]) as tf.Tensor2D
    const { loss, grads } = n.lossAndGrads(x, y)
    tf.dispose(loss)
    const eps = 1e-3
    n.variables.forEach((v, i) => {
      let seed = 17 + i
      const direction = tf.tensor(Float32Array.from({ length: v.size }, () => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
        return (seed / 2 ** 32) * 2 - 1
      }), v.shape)
      const analytic = tf.sum(tf.mul(grads[i], direction)).dataSync()[0]
      const original = v.clone()
      const lossAt = (step: number): number => {
        v.assign(tf.add(original, tf.mul(direction, step)))
        const r = n.lossAndGrads(x, y)
        const value = r.loss.dataSync()[0]
        tf.dispose([r.loss, ...r.grads])
        return value
      }
      const numeric = (lossAt(eps) - lossAt(-eps)) / (2 * eps)
      v.assign(original)
      // float32 losses near 5.5 differ in the 7th digit: about 3e-4 of noise in the quotient
      assert.ok(Math.abs(numeric - analytic) <= 0.02 * Math.abs(analytic) + 1e-3, `${v.name}: finite differences ${numeric}, autodiff ${analytic}`)
      tf.dispose([direction, original])
    })
    tf.dispose([x, y, ...grads])
    n.dispose()
  })

  it('samples text deterministically for a seed, and saves and loads to the same model', async () => {
    const n = net(small, 5)
    const a = generate(n, { prompt: 'Hi', tokens: 20, seed: 9 })
    assert.deepEqual(generate(n, { prompt: 'Hi', tokens: 20, seed: 9 }), a)
    assert.notEqual(generate(n, { prompt: 'Hi', tokens: 20, seed: 10 }).text, a.text)
    assert.equal(generate(n, { prompt: 'Hi', tokens: 20, temperature: 0, seed: 1 }).text, generate(n, { prompt: 'Hi', tokens: 20, temperature: 0, seed: 2 }).text)
    // longer than the context: the model sees the last `context` bytes
    assert.equal(Buffer.byteLength(generate(n, { prompt: 'x'.repeat(30), tokens: 5, seed: 1 }).text) >= 1, true)
    assert.throws(() => generate(n, { prompt: 'Hi', tokens: 0 }), /tokens: expected an integer/)
    const saved = await saveGpt(n, 'weights.bin')
    const loaded = loadGpt(JSON.parse(JSON.stringify(saved.modelJson)), saved.weights)
    assert.deepEqual(generate(loaded, { prompt: 'Hi', tokens: 20, seed: 9 }), a)
    assert.throws(() => loadGpt(saved.modelJson, saved.weights.subarray(4)), /weights file holds/)
    assert.throws(() => loadGpt({ ...saved.modelJson, format: 'x' }, saved.weights), /not a gpt model/)
    n.dispose()
    loaded.dispose()
  })

  it('refuses a data set that is not byte windows of its context', () => {
    assert.throws(() => createGptNet({ preset: 'gpt', hidden: [], inputShape: [10], classes: GPT_VOCAB, seed: 1 }, small), /context 8 needs rows of 9 tokens/)
    assert.throws(() => createGptNet({ preset: 'gpt', hidden: [], inputShape: [9], classes: 10, seed: 1 }, small), /256 byte classes/)
    assert.throws(() => net({ ...small, heads: 3 }), /multiple of heads/)
  })
})

describe('language-model rows', () => {
  it('cuts text into windows of context + 1 bytes every context bytes, the class the last byte', () => {
    const text = Buffer.from('abcdefghij')
    const w = lmWindows(text, 3)
    assert.equal(w.n, 3)
    assert.equal(w.features, 4)
    assert.deepEqual(Array.from(w.x), [...'abcddefgghij'].map(c => c.charCodeAt(0)))
    assert.deepEqual(Array.from(w.y), [...'dgj'].map(c => c.charCodeAt(0)))
    assert.equal(lmWindows(Buffer.from('abc'), 3).n, 0)
  })

  it('the built-in spam-text: e-mail bodies as windows of 65 bytes, held-out e-mails apart', () => {
    const d = loadDataset('spam-text')
    assert.equal(d.features, SPAM_TEXT_CONTEXT + 1)
    assert.equal(d.classes, 256)
    assert.ok(d.train.n > 8000 && d.test.n > 1000, `${d.train.n} training and ${d.test.n} test windows`)
    const rows = d.train.examples
    assert.ok(rows !== null)
    for (let r = 0; r < 50; r++) assert.equal(rows.y[r], rows.x[r * d.features + SPAM_TEXT_CONTEXT])
    const text = Buffer.from(Array.from(rows.x.subarray(0, 20 * d.features)))
    assert.ok(text.toString('utf8').split('').filter(c => /[a-z ]/i.test(c)).length > 0.6 * text.length, 'mostly letters and spaces')
  })

  it('never cuts a UTF-8 character in two at the end of an e-mail body', () => {
    assert.equal(trailingPartial(Buffer.from('ab')), 0)
    assert.equal(trailingPartial(Buffer.from('aé')), 0)
    assert.equal(trailingPartial(Buffer.from('aé').subarray(0, 2)), 1)
    assert.equal(trailingPartial(Buffer.from('a€').subarray(0, 3)), 2)
  })

  it('job: gpt options are validated and belong to model gpt only', () => {
    assert.deepEqual(parseJob({ model: 'gpt', gpt: {} }).gpt, { layers: 2, dim: 64, heads: 4 })
    assert.throws(() => parseJob({ model: 'gpt', gpt: { dim: 30, heads: 4 } }), /gpt: dim must be a multiple of heads/)
    assert.throws(() => parseJob({ model: 'mlp', gpt: { layers: 2 } }), /gpt options are for model gpt only/)
    // a job without gpt options keeps the id it had before the field existed
    assert.equal(jobId(parseJob({})), jobId(parseJob({ dataset: 'mnist' })))
  })
})

describe('gpt training, one peer', () => {
  it('learns e-mail text: the held-out loss falls below the unigram entropy', async () => {
    const context = 32
    const text = spamText(64 * 1024)
    const cut = Math.floor(text.length * 0.85)
    const dataset = lmDataset('spam-text-64k', text.subarray(0, cut), text.subarray(cut), context)
    const unigram = unigramEntropyBits(text.subarray(0, cut))
    const job = parseJob({ dataset: 'spam-text', model: 'gpt', gpt: { layers: 2, dim: 64, heads: 4, context }, batchSize: 16, learningRate: 0.003, epochs: 1 })
    const trainer = new Trainer({ job, jobId: jobId(job), dataset })
    const first = await trainer.evaluate()
    assert.ok(Math.abs(first.loss - Math.log(256)) < 0.1, `untrained loss ${first.loss} nats`)
    for (let s = 0; s < 80; s++) trainer.applyUpdate(await trainer.computeUpdate())
    const last = await trainer.evaluate()
    const bits = last.loss / Math.LN2
    assert.ok(bits < unigram, `held-out ${bits.toFixed(3)} bits per byte, unigram entropy ${unigram.toFixed(3)}`)
    // a checkpoint of a gpt model restores to the same weights
    const ckpt = await trainer.capture()
    const again = new Trainer({ job, jobId: jobId(job), dataset })
    await again.restore(ckpt)
    assert.equal(again.weightsHash(), trainer.weightsHash())
    trainer.dispose()
    again.dispose()
  })
})
