/**
 * The current model out of the running peer: in TensorFlow.js's layers
 * format (what `tf.loadLayersModel` reads), and evaluated on the test split.
 * Both copy the weights in one synchronous step, so a training step in
 * between cannot tear them.
 */
import * as tf from '@tensorflow/tfjs'
import type { Trainer } from '../trainer/index.ts'
import { GptNet } from '../trainer/gpt.ts'
import { GenerateInputError, generate, saveGpt } from '../trainer/generate.ts'
import type { Evaluation, ExportedModel, GeneratedText } from './types.ts'

/** The weights file `model.json` points at. */
export const WEIGHTS_FILE = 'weights.bin'

export async function exportModel (trainer: Trainer): Promise<ExportedModel> {
  // toLayersModel copies the weights synchronously: the snapshot is of one step
  const step = trainer.progress.step
  const round = trainer.progress.round
  const weightsHash = trainer.weightsHash()
  const accuracy = trainer.lastEvaluation?.accuracy ?? null
  if (trainer.net instanceof GptNet) {
    // no layers form: the gpt's own (node/trainer/generate.ts), read back by `peer generate --from DIR`
    const metadata = { peer: { jobId: trainer.jobId, job: trainer.job, step, round, weightsHash, testLoss: trainer.lastEvaluation?.loss ?? null, output: 'next-byte logits' } }
    const { modelJson, weights } = await saveGpt(trainer.net, WEIGHTS_FILE, metadata)
    return { modelJson, weightsFile: WEIGHTS_FILE, weightsBase64: Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength).toString('base64'), step, round, weightsHash, accuracy, jobId: trainer.jobId }
  }
  const model = trainer.net.toLayersModel()
  try {
    let artifacts: tf.io.ModelArtifacts | null = null
    await model.save(tf.io.withSaveHandler(async a => {
      artifacts = a
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }))
    const a = artifacts as tf.io.ModelArtifacts | null
    if (a === null || a.weightData === undefined || a.weightSpecs === undefined) throw new Error('the model saved no weights')
    const data = new Uint8Array(tf.io.CompositeArrayBuffer.join(a.weightData))
    const modelJson: Record<string, unknown> = {
      modelTopology: a.modelTopology,
      format: a.format ?? 'layers-model',
      generatedBy: a.generatedBy,
      convertedBy: a.convertedBy ?? null,
      weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: a.weightSpecs }],
      userDefinedMetadata: {
        peer: {
          jobId: trainer.jobId,
          job: trainer.job,
          step,
          round,
          weightsHash,
          testAccuracy: accuracy,
          output: trainer.net.outputs === 'probabilities' ? 'probabilities (the model\'s own softmax)' : 'logits (apply softmax for probabilities)'
        }
      }
    }
    return {
      modelJson,
      weightsFile: WEIGHTS_FILE,
      weightsBase64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
      step,
      round,
      weightsHash,
      accuracy,
      jobId: trainer.jobId
    }
  } finally {
    model.dispose()
  }
}

/**
 * Loss and accuracy of the current weights on the test split, computed as
 * the trainer's own evaluation does (one synchronous pass, so no training
 * step lands in between), without touching the trainer's figures.
 */
export async function evaluateModel (trainer: Trainer): Promise<Evaluation> {
  const started = performance.now()
  const test = trainer.dataset.test
  const classes = trainer.dataset.classes
  const y = new Float32Array(test.n * classes)
  for (let i = 0; i < test.n; i++) y[i * classes + test.y[i]] = 1
  const step = trainer.progress.step
  const round = trainer.progress.round
  const weightsHash = trainer.weightsHash()
  if (trainer.net.evaluateRows !== undefined) {
    // a language model: loss per token (nats), next-token accuracy; no classes to break it down by
    const { loss, accuracy } = trainer.net.evaluateRows(test.x, test.n)
    return { rows: test.n, loss, accuracy, perClass: [], step, round, weightsHash, ms: Math.round(performance.now() - started), bitsPerByte: loss / Math.LN2 }
  }
  const { loss, predicted } = tf.tidy(() => {
    const xs = tf.tensor2d(test.x, [test.n, test.features])
    const ys = tf.tensor2d(y, [test.n, classes])
    const logits = trainer.net.predict(xs)
    return {
      loss: tf.losses.softmaxCrossEntropy(ys, logits).dataSync()[0],
      predicted: tf.argMax(logits, 1).dataSync() as Int32Array
    }
  })
  let correct = 0
  const right = new Array<number>(classes).fill(0)
  const rows = new Array<number>(classes).fill(0)
  for (let i = 0; i < test.n; i++) {
    const label = test.y[i]
    rows[label] += 1
    if (predicted[i] === label) {
      correct += 1
      right[label] += 1
    }
  }
  return {
    rows: test.n,
    loss,
    accuracy: test.n > 0 ? correct / test.n : 0,
    perClass: rows.map((n, c) => (n > 0 ? right[c] / n : null)),
    step,
    round,
    weightsHash,
    ms: Math.round(performance.now() - started)
  }
}

/**
 * A continuation of `prompt` sampled from the current gpt model (query:
 * prompt, tokens, temperature, seed; see node/trainer/generate.ts), in one
 * synchronous pass: no training step lands in between.
 */
export function generateText (trainer: Trainer, query: URLSearchParams): GeneratedText {
  if (!(trainer.net instanceof GptNet)) throw new GenerateInputError(`the job's model is ${trainer.job.model}, not gpt: it does not generate text`)
  const number = (key: string): number | undefined => {
    const v = query.get(key)
    if (v === null) return undefined
    if (v.trim() === '' || !Number.isFinite(Number(v))) throw new GenerateInputError(`${key}: expected a number`)
    return Number(v)
  }
  const started = performance.now()
  const out = generate(trainer.net, { prompt: query.get('prompt') ?? '', tokens: number('tokens'), temperature: number('temperature'), seed: number('seed') })
  return { ...out, step: trainer.progress.step, weightsHash: trainer.weightsHash(), ms: Math.round(performance.now() - started) }
}
