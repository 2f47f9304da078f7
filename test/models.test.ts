/**
 * The user's own model: importing a TF.js Layers model.json into the data
 * dir's store (content-addressed, checked), the errors a bad file gets (the
 * CLI exits 2 naming the file and the layer), the Net over it (seeded
 * initialisation, batch-norm statistics as averaged state, softmax taken off
 * for training and put back for export), and the `/peer/model/1.0.0` codec's
 * bounds.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import * as tf from '@tensorflow/tfjs'
import { importModel, loadModel, modelsRoot, readModelFiles } from '../node/models/index.ts'
import { Trainer, createLayersNet, selectBackend } from '../node/trainer/index.ts'
import { loadDataset } from '../node/data/index.ts'
import { parseJob, jobId } from '../protocols/job/index.ts'
import { MAX_WEIGHTS_BYTES, decodeResponse, encodeHeader, encodeRequest, decodeRequest } from '../protocols/model/index.ts'
import { main } from '../node/cli/main.ts'
import { runPeer, tempDir } from './helpers/peer-process.ts'
import { kerasStyleCnn, saveToDir } from './helpers/layers-model.ts'

function sink (): { stream: Writable, text: () => string } {
  let text = ''
  return { stream: new Writable({ write (chunk, _enc, cb) { text += String(chunk); cb() } }), text: () => text }
}

async function startWith (args: string[]): Promise<{ code: number, stderr: string }> {
  const out = sink()
  const err = sink()
  const code = await main(['start', ...args], { stdout: out.stream, stderr: err.stream, env: {} })
  return { code, stderr: err.text() }
}

function denseModel (activation: string = 'softmax'): tf.Sequential {
  const m = tf.sequential()
  m.add(tf.layers.dense({ inputShape: [784], units: 16, activation: 'relu' }))
  m.add(tf.layers.dense({ units: 10, activation: activation as 'softmax' }))
  return m
}

test('bad model files get a clear error naming the problem, and peer start exits 2', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const dataDir = join(dir.path, 'data')
    const missing = await startWith(['--data-dir', dataDir, '--model', join(dir.path, 'nope', 'model.json')])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /no such file/)
    assert.match(missing.stderr, /presets: mlp, cnn/)

    const badJson = join(dir.path, 'bad.json')
    writeFileSync(badJson, '{"modelTopology": {')
    const bad = await startWith(['--data-dir', dataDir, '--model', badJson])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /bad\.json is not JSON/)

    // a layer TensorFlow.js does not have (Keras's Lambda), named in the error
    const path = await saveToDir(denseModel(), join(dir.path, 'lambda'), { weights: false })
    const json = JSON.parse(readFileSync(path, 'utf8'))
    json.modelTopology.config.layers.splice(1, 0, { class_name: 'Lambda', config: { name: 'my_lambda', function: 'x * 2' } })
    writeFileSync(path, JSON.stringify(json))
    const lambda = await startWith(['--data-dir', dataDir, '--model', path])
    assert.equal(lambda.code, 2)
    assert.match(lambda.stderr, /unsupported layer "my_lambda" \(class Lambda\)/)

    // the same through a job file, the model path relative to it
    const jobFile = join(dir.path, 'lambda', 'job.json')
    writeFileSync(jobFile, JSON.stringify({ model: './model.json', epochs: 1 }))
    const viaJob = await startWith(['--data-dir', dataDir, '--job', jobFile])
    assert.equal(viaJob.code, 2)
    assert.match(viaJob.stderr, /job\.json: model \.\/model\.json: .*unsupported layer "my_lambda"/)

    // an output activation softmax cross-entropy cannot train
    const sigmoid = await saveToDir(denseModel('sigmoid'), join(dir.path, 'sigmoid'), { weights: false })
    await assert.rejects(importModel(dataDir, sigmoid), (err: Error) => err.name === 'InvalidModelError' && /output layer "dense_Dense\d+" .*sigmoid/.test(err.message))

    // a graph model is not a layers model
    const graph = join(dir.path, 'graph.json')
    writeFileSync(graph, JSON.stringify({ format: 'graph-model', modelTopology: { node: [] } }))
    await assert.rejects(importModel(dataDir, graph), /is a graph-model, not a layers-model/)

    // weights that do not match their manifest
    const short = await saveToDir(denseModel(), join(dir.path, 'short'))
    const weights = readFileSync(join(dir.path, 'short', 'weights.bin'))
    writeFileSync(join(dir.path, 'short', 'weights.bin'), weights.subarray(0, weights.byteLength - 4))
    await assert.rejects(importModel(dataDir, short), /weights files hold \d+ bytes, the manifest describes \d+/)
    const gone = await saveToDir(denseModel(), join(dir.path, 'gone'))
    const gj = JSON.parse(readFileSync(gone, 'utf8'))
    gj.weightsManifest[0].paths = ['./other.bin']
    writeFileSync(gone, JSON.stringify(gj))
    await assert.rejects(importModel(dataDir, gone), /cannot read weights file .*other\.bin: no such file/)
    gj.weightsManifest[0].paths = ['https://example.com/w.bin']
    writeFileSync(gone, JSON.stringify(gj))
    await assert.rejects(importModel(dataDir, gone), /must be relative to the model\.json/)

    // nothing half-written is left in the store
    let stored: string[] = []
    try { stored = readdirSync(modelsRoot(dataDir)) } catch {}
    assert.deepEqual(stored, [])
  } finally {
    await dir.remove()
  }
})

test('a model is stored content-addressed, re-hashed on read, and its weights kept', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const model = denseModel()
    const withWeights = await saveToDir(model, join(dir.path, 'w'))
    const without = await saveToDir(model, join(dir.path, 'n'), { weights: false })
    const a = await importModel(dir.path, withWeights)
    const b = await importModel(dir.path, withWeights)
    const c = await importModel(dir.path, without)
    assert.match(a.id, /^mdl-[0-9a-f]{16}$/)
    assert.equal(a.id, b.id)
    assert.notEqual(a.id, c.id)
    assert.equal(a.info.parameters, 784 * 16 + 16 + 16 * 10 + 10)
    assert.equal(a.info.output.activation, 'softmax')

    // fine-tuning starts from the file's weights
    const source = loadModel(dir.path, a.id)
    const net = await createLayersNet(source, { features: 784, classes: 10, seed: 1 })
    const expected = model.getWeights().map(w => Array.from(w.dataSync()))
    assert.deepEqual(net.variables.map(v => Array.from(v.dataSync())), expected)
    net.dispose()

    // a damaged file is refused
    const weightsPath = join(modelsRoot(dir.path), a.id, 'weights.bin')
    const bytes = readFileSync(weightsPath)
    bytes[0] ^= 1
    writeFileSync(weightsPath, bytes)
    assert.throws(() => readModelFiles(dir.path, a.id), (err: Error) => err.name === 'CorruptModelError')
  } finally {
    await dir.remove()
  }
})

test('without weights the net is initialised from the job seed, the same on every member', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const { id } = await importModel(dir.path, await saveToDir(kerasStyleCnn(), join(dir.path, 'cnn'), { weights: false }))
    const source = loadModel(dir.path, id)
    const values = async (seed: number): Promise<number[][]> => {
      const net = await createLayersNet(source, { features: 784, classes: 10, seed })
      const v = net.variables.map(x => Array.from(x.dataSync()))
      net.dispose()
      return v
    }
    const [one, again, other] = [await values(7), await values(7), await values(8)]
    assert.deepEqual(one, again)
    assert.notDeepEqual(one, other)
  } finally {
    await dir.remove()
  }
})

test('batch-norm moving statistics are state: unchanged by computing, set when the update is applied', async () => {
  await selectBackend('wasm') // the cpu backend's conv gradients take seconds a step
  const dir = await tempDir('peer-models-')
  try {
    const { id } = await importModel(dir.path, await saveToDir(kerasStyleCnn(), join(dir.path, 'cnn'), { weights: false }))
    const dataset = loadDataset('mnist')
    const job = parseJob({ model: id, batchSize: 32, seed: 3 })
    const net = await createLayersNet(loadModel(dir.path, id), { features: dataset.features, classes: dataset.classes, seed: job.seed })
    assert.equal(net.outputs, 'probabilities')
    const state = net.variables.filter(v => !v.trainable)
    assert.deepEqual(state.map(v => v.name.replace(/_\d+$/, '').split('/').pop()), ['moving_mean', 'moving_variance'])
    const trainer = new Trainer({ job, jobId: jobId(job), dataset, net })
    const before = state.map(v => Array.from(v.dataSync()))
    const hash = trainer.weightsHash()
    const update = await trainer.computeUpdate()
    assert.deepEqual(state.map(v => Array.from(v.dataSync())), before, 'computing a step leaves the moving statistics alone')
    assert.equal(trainer.weightsHash(), hash)
    // the swarm's path: flattened, summed (here alone), unflattened, applied
    const vector = trainer.flattenUpdate(update)
    trainer.applyUpdate(trainer.unflattenUpdate(vector, update.loss), update.samples)
    const after = state.map(v => Array.from(v.dataSync()))
    assert.notDeepEqual(after, before, 'applying the update moves the statistics')
    assert.ok(after[0].some(x => x !== 0))
    // the exported model keeps the user's softmax and the trained weights
    const exported = net.toLayersModel()
    const x = tf.tensor2d(dataset.test.x.subarray(0, 784 * 4), [4, 784])
    const probs = (exported.predict(tf.reshape(x, [4, 28, 28, 1])) as tf.Tensor).arraySync() as number[][]
    for (const row of probs) assert.ok(Math.abs(row.reduce((s, p) => s + p, 0) - 1) < 1e-4, 'softmax rows sum to 1')
    const logits = net.predict(x).arraySync()
    assert.deepEqual(probs.map(r => r.indexOf(Math.max(...r))), logits.map(r => r.indexOf(Math.max(...r))))
    exported.dispose()
    trainer.dispose()
  } finally {
    await dir.remove()
  }
})

test('weight constraints are projected after every update (as Keras does), identically on every member', async () => {
  await selectBackend('wasm')
  const dir = await tempDir('peer-models-')
  try {
    const m = tf.sequential()
    m.add(tf.layers.dense({ inputShape: [784], units: 16, activation: 'relu', kernelConstraint: tf.constraints.nonNeg(), name: 'nonneg' }))
    m.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelConstraint: tf.constraints.maxNorm({ maxValue: 0.5, axis: 0 }), name: 'maxnorm' }))
    const { id } = await importModel(dir.path, await saveToDir(m, join(dir.path, 'c'), { weights: false }))
    const dataset = loadDataset('mnist')
    const job = parseJob({ model: id, batchSize: 32, seed: 5, learningRate: 0.05 })
    const hashes: string[] = []
    for (let member = 0; member < 2; member++) {
      const net = await createLayersNet(loadModel(dir.path, id), { features: dataset.features, classes: dataset.classes, seed: job.seed })
      const [kernel0, , kernel1] = net.variables
      assert.ok(kernel0.dataSync().some(x => x < 0), 'the initial kernel has negative values (constraints apply to updates, not to initialisation)')
      const trainer = new Trainer({ job, jobId: jobId(job), dataset, net })
      for (let step = 0; step < 3; step++) {
        const update = await trainer.computeUpdate()
        trainer.applyUpdate(trainer.unflattenUpdate(trainer.flattenUpdate(update), update.loss), update.samples)
        assert.ok(kernel0.dataSync().every(x => x >= 0), `step ${step}: nonNeg holds`)
        const norms = tf.tidy(() => tf.sqrt(tf.sum(tf.square(kernel1), 0)).dataSync())
        assert.ok(norms.every(n => n <= 0.5 + 1e-5), `step ${step}: maxNorm holds (largest column norm ${Math.max(...norms)})`)
      }
      hashes.push(trainer.weightsHash())
      trainer.dispose()
    }
    assert.equal(hashes[0], hashes[1])
  } finally {
    await dir.remove()
  }
})

test('a model whose input or output does not fit the data set is refused, naming the layer', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const { id } = await importModel(dir.path, await saveToDir(denseModel(), join(dir.path, 'd'), { weights: false }))
    await assert.rejects(createLayersNet(loadModel(dir.path, id), { features: 100, classes: 10, seed: 1 }), /takes 784 values per example, the data set has 100 features/)
    await assert.rejects(createLayersNet(loadModel(dir.path, id), { features: 784, classes: 2, seed: 1 }), /output layer "dense_Dense\d+" gives shape \[None, 10\], the data set has 2 classes/)
  } finally {
    await dir.remove()
  }
})

test('peer start with a model that does not fit the data set exits 2 naming the mismatch (a real process)', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const small = tf.sequential()
    small.add(tf.layers.dense({ inputShape: [100], units: 10, activation: 'softmax' }))
    const fiveClasses = tf.sequential()
    fiveClasses.add(tf.layers.dense({ inputShape: [784], units: 5, name: 'five' }))
    const cases: Array<[tf.Sequential, string, RegExp]> = [
      [small, 'input', /input \[100\] takes 100 values per example, the data set has 784 features/],
      [fiveClasses, 'output', /output layer "five" gives shape \[None, 5\], the data set has 10 classes/]
    ]
    for (const [model, name, message] of cases) {
      const path = await saveToDir(model, join(dir.path, name), { weights: false })
      const run = await runPeer(['start', '--data-dir', join(dir.path, `data-${name}`), '--open', '--listen', '/ip4/127.0.0.1/tcp/0', '--dataset', 'mnist', '--model', path, '--epochs', '1', '--exit-when-done'])
      assert.equal(run.code, 2, `${name}: ${run.stderr}`)
      assert.match(run.stderr, message)
      model.dispose()
    }
  } finally {
    await dir.remove()
  }
})

test('/peer/model/1.0.0 frames are bounded', () => {
  assert.equal(decodeRequest(encodeRequest('mdl-0123456789abcdef')), 'mdl-0123456789abcdef')
  assert.throws(() => encodeRequest('mdl-xyz'), /mdl- and 16/)
  assert.throws(() => decodeRequest(new Uint8Array([1, 2, 3])), (err: Error) => err.name === 'InvalidMessageError')
  const head = decodeResponse(encodeHeader(100, 4096))
  assert.deepEqual(head, { type: 'header', jsonBytes: 100, weightsBytes: 4096 })
  const big = encodeHeader(100, 0)
  new DataView(big.buffer).setBigUint64(9, BigInt(MAX_WEIGHTS_BYTES) + 1n, true)
  assert.throws(() => decodeResponse(big), (err: Error) => err.name === 'InvalidMessageError' && (err as Error & { kind: string }).kind === 'too-large')
  assert.throws(() => decodeResponse(new Uint8Array([9])), /unknown frame type/)
  // random frames: decoded or refused with InvalidMessageError, never anything else
  let seed = 1
  const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 }
  for (let i = 0; i < 2000; i++) {
    const frame = Uint8Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Math.floor(rand() * 256))
    frame[0] = 1 + Math.floor(rand() * 5)
    for (const decode of [decodeResponse, decodeRequest]) {
      try { decode(frame) } catch (err) { assert.equal((err as Error).name, 'InvalidMessageError', String(err)) }
    }
  }
})

test('/peer/model/1.0.0 between two libp2p nodes: fetched whole and hash checked; unknown ids, lies and garbage are refused', async () => {
  const { createLibp2p } = await import('libp2p')
  const { tcp } = await import('@libp2p/tcp')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { ModelService, fetchModel, MODEL_PROTOCOL } = await import('../node/models/index.ts')
  const { prefixed } = await import('../protocols/common/index.ts')
  const { encodeData, encodeHeader } = await import('../protocols/model/index.ts')
  const dir = await tempDir('peer-models-')
  const nodes = await Promise.all([0, 1, 2].map(async () => await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })))
  const [holder, asker, liar] = nodes
  const service = new ModelService({ node: holder, dataDir: join(dir.path, 'holder') })
  try {
    for (const a of nodes) for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
    await service.start()
    // 784x128 weights: several data frames, one of them straddling model.json and weights.bin
    const model = tf.sequential()
    model.add(tf.layers.dense({ inputShape: [784], units: 128, activation: 'relu' }))
    model.add(tf.layers.dense({ units: 10 }))
    const { id } = await importModel(join(dir.path, 'holder'), await saveToDir(model, join(dir.path, 'src')))
    // a peer that answers with a header and bytes of something else
    await liar.handle(MODEL_PROTOCOL, ({ stream }) => {
      void stream.sink([prefixed(encodeHeader(3, 1)), prefixed(encodeData(new Uint8Array([123, 125, 10, 0])))])
    })
    const askerDir = join(dir.path, 'asker')
    const r = await fetchModel(asker, [liar.peerId, holder.peerId], id, askerDir)
    assert.equal(r.peer, holder.peerId.toString())
    const theirs = readModelFiles(join(dir.path, 'holder'), id)
    const mine = readModelFiles(askerDir, id)
    assert.deepEqual(Buffer.compare(Buffer.from(mine.weights), Buffer.from(theirs.weights)), 0)
    assert.ok(theirs.weights.byteLength > 256 * 1024)
    assert.equal(readdirSync(modelsRoot(askerDir)).filter(n => n.startsWith('.')).length, 0, 'no temp dirs left behind')
    await assert.rejects(fetchModel(asker, [liar.peerId], id, join(dir.path, 'other')), (err: Error) => err.name === 'ModelUnavailableError' && /hashes to mdl-[0-9a-f]{16}, not/.test(err.message))
    await assert.rejects(fetchModel(asker, [holder.peerId], 'mdl-0000000000000000', join(dir.path, 'other')), /not-found: no model mdl-0000000000000000/)
    // garbage instead of a request: answered bad-request, counted, and the service goes on
    const stream = await asker.dialProtocol(holder.peerId, MODEL_PROTOCOL)
    await stream.sink([prefixed(new Uint8Array([7, 7, 7]))])
    for await (const chunk of stream.source) void chunk
    assert.equal(service.invalid, 1)
    await fetchModel(asker, [holder.peerId], id, join(dir.path, 'again'))
    assert.equal(service.served, 2)
  } finally {
    await service.stop()
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await dir.remove()
  }
})

test('every layer kind the issue names trains through the Net on wasm: finite gradients for every trainable weight', async () => {
  await selectBackend('wasm')
  const dir = await tempDir('peer-models-')
  const L = tf.layers
  const cases: Array<[string, () => tf.layers.Layer[]]> = [
    ['dense', () => [L.dense({ inputShape: [12], units: 8, activation: 'relu' })]],
    ['conv1d + pooling', () => [L.reshape({ inputShape: [12], targetShape: [6, 2] }), L.conv1d({ filters: 4, kernelSize: 3, activation: 'relu' }), L.maxPooling1d({ poolSize: 2 }), L.flatten()]],
    ['conv2d + batch norm + pooling', () => [L.reshape({ inputShape: [12], targetShape: [2, 2, 3] }), L.conv2d({ filters: 4, kernelSize: 2, padding: 'same' }), L.batchNormalization(), L.averagePooling2d({ poolSize: 2 }), L.flatten()]],
    ['depthwise + separable conv', () => [L.reshape({ inputShape: [12], targetShape: [2, 2, 3] }), L.depthwiseConv2d({ kernelSize: 2, padding: 'same' }), L.separableConv2d({ filters: 4, kernelSize: 2, padding: 'same' }), L.globalAveragePooling2d({})]],
    ['embedding + layer norm', () => [L.embedding({ inputShape: [12], inputDim: 4, outputDim: 3 }), L.layerNormalization(), L.flatten()]],
    ['lstm', () => [L.reshape({ inputShape: [12], targetShape: [4, 3] }), L.lstm({ units: 5 })]],
    ['gru + dropout', () => [L.reshape({ inputShape: [12], targetShape: [4, 3] }), L.gru({ units: 5, returnSequences: true }), L.dropout({ rate: 0.2 }), L.flatten()]]
  ]
  try {
    const x = tf.tensor2d(Array.from({ length: 6 * 12 }, (_, i) => (i * 7 % 13) / 4), [6, 12])
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3).toFloat() as tf.Tensor2D
    for (const [name, layers] of cases) {
      const model = tf.sequential({ layers: [...layers(), L.dense({ units: 3, activation: 'softmax' })] })
      const { id } = await importModel(dir.path, await saveToDir(model, join(dir.path, name.replace(/\W+/g, '-')), { weights: false }))
      const net = await createLayersNet(loadModel(dir.path, id), { features: 12, classes: 3, seed: 5 })
      const { loss, grads } = net.lossAndGrads(x, y, 0)
      assert.ok(Number.isFinite(loss.dataSync()[0]), `${name}: loss`)
      net.variables.forEach((v, i) => {
        assert.deepEqual(grads[i].shape, v.shape, `${name}: ${v.name}`)
        const g = grads[i].dataSync()
        assert.ok(g.every(Number.isFinite), `${name}: ${v.name} finite`)
        if (v.trainable) assert.ok(g.some(d => d !== 0) || /bias|beta/.test(v.name), `${name}: ${v.name} has a gradient`)
      })
      tf.dispose([loss, ...grads])
      net.dispose()
    }
  } finally {
    await dir.remove()
  }
})

test('a functional model, and a softmax as its own layer, train on logits and export with the softmax', async () => {
  await selectBackend('wasm')
  const dir = await tempDir('peer-models-')
  try {
    const input = tf.input({ shape: [12] })
    const hidden = tf.layers.dense({ units: 8, activation: 'relu' }).apply(input) as tf.SymbolicTensor
    const logits = tf.layers.dense({ units: 3 }).apply(hidden) as tf.SymbolicTensor
    const probs = tf.layers.softmax().apply(logits) as tf.SymbolicTensor
    const model = tf.model({ inputs: input, outputs: probs })
    const { id, info } = await importModel(dir.path, await saveToDir(model, join(dir.path, 'functional'), { weights: false }))
    assert.equal(info.output.className, 'Softmax')
    const net = await createLayersNet(loadModel(dir.path, id), { features: 12, classes: 3, seed: 5 })
    assert.equal(net.outputs, 'probabilities')
    const x = tf.tensor2d(Array.from({ length: 2 * 12 }, (_, i) => i / 24), [2, 12])
    const trained = net.predict(x).arraySync()
    assert.ok(trained.some(row => row.some(v => v < 0 || v > 1)), 'the net gives logits')
    const exported = net.toLayersModel()
    assert.equal(exported.layers[exported.layers.length - 1].getClassName(), 'Softmax')
    const p = (exported.predict(x) as tf.Tensor).arraySync() as number[][]
    for (const [r, row] of p.entries()) {
      const e = trained[r].map(v => Math.exp(v))
      const sum = e.reduce((a, b) => a + b, 0)
      row.forEach((v, c) => { assert.ok(Math.abs(v - e[c] / sum) < 1e-5) })
    }
    exported.dispose()
    net.dispose()
  } finally {
    await dir.remove()
  }
})

test('a model as tensorflowjs_converter writes it from Keras (model_config wrapper, sharded weight files) is fine-tuned from its weights', async () => {
  const dir = await tempDir('peer-models-')
  try {
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ name: 'dense', inputShape: [784], units: 16, activation: 'relu' }),
        tf.layers.dense({ name: 'dense_1', units: 10, activation: 'softmax' })
      ]
    })
    let saved: tf.io.ModelArtifacts | null = null
    await model.save(tf.io.withSaveHandler(async a => { saved = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } } }))
    const artifacts = saved as unknown as tf.io.ModelArtifacts
    const bytes = Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData!))
    const half = 4 * 1000
    const out = join(dir.path, 'converted')
    mkdirSync(out)
    writeFileSync(join(out, 'group1-shard1of2.bin'), bytes.subarray(0, half))
    writeFileSync(join(out, 'group1-shard2of2.bin'), bytes.subarray(half))
    writeFileSync(join(out, 'model.json'), JSON.stringify({
      format: 'layers-model',
      generatedBy: 'keras v2.15.0',
      convertedBy: 'TensorFlow.js Converter v4.22.0',
      modelTopology: { keras_version: '2.15.0', backend: 'tensorflow', model_config: artifacts.modelTopology, training_config: { loss: 'categorical_crossentropy' } },
      weightsManifest: [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: artifacts.weightSpecs }]
    }))
    const { id, info } = await importModel(dir.path, join(out, 'model.json'))
    assert.deepEqual(info.layers.map(l => l.name), ['dense', 'dense_1'])
    const net = await createLayersNet(loadModel(dir.path, id), { features: 784, classes: 10, seed: 1 })
    assert.deepEqual(net.variables.map(v => Array.from(v.dataSync())), model.getWeights().map(w => Array.from(w.dataSync())))
    net.dispose()
  } finally {
    await dir.remove()
  }
})
