/**
 * Text from a gpt net: sampling byte after byte, and the gpt model's own
 * saved form (what `peer export` writes for a gpt job and `peer generate
 * --from DIR` reads).
 *
 * Sampling: the prompt's UTF-8 bytes, then `tokens` bytes, each drawn from
 * softmax(logits / temperature) of the last `context` bytes with a seeded
 * generator (mulberry32), so the same weights, prompt, temperature and seed
 * give the same text on every machine; temperature 0 takes the most likely
 * byte. The output is decoded as UTF-8 (a byte sequence the model got wrong
 * becomes U+FFFD).
 *
 * Saved form: `model.json` `{ format: 'peer-gpt/1', gpt: { layers, dim,
 * heads, context }, weightsManifest: [{ paths: ['weights.bin'], weights }] }`
 * with TensorFlow.js's weight specs (tf.io.encodeWeights), the weights in
 * variable order; `weights.bin` their bytes.
 */
import * as tf from '@tensorflow/tfjs'
import { seededRandom } from '../data/random.ts'
import { GPT_VOCAB, createGptNet, validateGpt } from './gpt.ts'
import type { GptNet, GptOptions } from './gpt.ts'
import { generateOptions } from './generate-options.ts'
import type { GenerateOptions, Generated } from './generate-options.ts'

export { GenerateInputError, MAX_GENERATE_TOKENS, MAX_PROMPT_BYTES, MAX_TEMPERATURE, generateOptions } from './generate-options.ts'
export type { GenerateOptions, Generated } from './generate-options.ts'

export const GPT_FORMAT = 'peer-gpt/1'

/** Samples a continuation of the prompt (synchronously: no training step lands in between). */
export function generate (net: GptNet, options: GenerateOptions): Generated {
  const { prompt, tokens, temperature, seed } = generateOptions(options)
  const context = net.options.context
  // an empty prompt starts at a line break, as a text does after a paragraph
  const seq = Array.from(prompt.length > 0 ? Buffer.from(prompt) : Buffer.from('\n'))
  const random = seededRandom(seed)
  const out: number[] = []
  const p = new Float64Array(GPT_VOCAB)
  for (let i = 0; i < tokens; i++) {
    const logits = net.nextLogits([seq.slice(-context)])
    let next = 0
    if (temperature === 0) {
      for (let k = 1; k < GPT_VOCAB; k++) if (logits[k] > logits[next]) next = k
    } else {
      let max = -Infinity
      for (let k = 0; k < GPT_VOCAB; k++) max = Math.max(max, logits[k])
      let sum = 0
      for (let k = 0; k < GPT_VOCAB; k++) {
        p[k] = Math.exp((logits[k] - max) / temperature)
        sum += p[k]
      }
      let u = random() * sum
      next = GPT_VOCAB - 1
      for (let k = 0; k < GPT_VOCAB; k++) {
        u -= p[k]
        if (u < 0) {
          next = k
          break
        }
      }
    }
    seq.push(next)
    out.push(next)
  }
  return { prompt, text: Buffer.from(out).toString('utf8'), tokens, temperature, seed }
}

/** model.json and the weights of a gpt net. */
export async function saveGpt (net: GptNet, weightsFile: string, metadata: Record<string, unknown> = {}): Promise<{ modelJson: Record<string, unknown>, weights: Uint8Array }> {
  const named = net.variables.map(v => ({ name: v.name, tensor: v as tf.Tensor }))
  const { data, specs } = await tf.io.encodeWeights(named)
  return {
    modelJson: {
      format: GPT_FORMAT,
      gpt: { ...net.options },
      weightsManifest: [{ paths: [`./${weightsFile}`], weights: specs }],
      userDefinedMetadata: metadata
    },
    weights: new Uint8Array(data)
  }
}

export class InvalidGptModelError extends Error {
  override name = 'InvalidGptModelError'
}

/** A gpt net from its saved form; throws InvalidGptModelError naming what is wrong. */
export function loadGpt (modelJson: unknown, weights: Uint8Array): GptNet {
  const m = modelJson as { format?: unknown, gpt?: Partial<GptOptions>, weightsManifest?: Array<{ weights?: tf.io.WeightsManifestEntry[] }> }
  if (m === null || typeof m !== 'object' || m.format !== GPT_FORMAT) throw new InvalidGptModelError(`not a gpt model (model.json's format is not "${GPT_FORMAT}")`)
  const options = { layers: Number(m.gpt?.layers), dim: Number(m.gpt?.dim), heads: Number(m.gpt?.heads), context: Number(m.gpt?.context) }
  try {
    validateGpt(options)
  } catch (err) {
    throw new InvalidGptModelError(`model.json: ${(err as Error).message}`)
  }
  const specs = m.weightsManifest?.[0]?.weights
  if (!Array.isArray(specs)) throw new InvalidGptModelError('model.json: no weightsManifest[0].weights')
  const net = createGptNet({ preset: 'gpt', hidden: [], inputShape: [options.context + 1], classes: GPT_VOCAB, seed: 0 }, options)
  try {
    if (specs.length !== net.variables.length) throw new InvalidGptModelError(`model.json lists ${specs.length} weights; a gpt of this size has ${net.variables.length}`)
    const expected = specs.reduce((n, s) => n + 4 * s.shape.reduce((a, b) => a * b, 1), 0)
    if (specs.some(s => s.dtype !== 'float32') || expected !== weights.byteLength) throw new InvalidGptModelError(`the weights file holds ${weights.byteLength} bytes; model.json describes ${expected} (float32 only)`)
    const tensors = tf.io.decodeWeights(weights.slice().buffer, specs)
    tf.tidy(() => {
      net.variables.forEach((v, i) => {
        const t = tensors[specs[i].name]
        if (t === undefined || t.shape.join('x') !== v.shape.join('x')) throw new InvalidGptModelError(`weight ${i} (${specs[i].name}) has shape ${t?.shape.join('x') ?? '?'}, the model ${v.shape.join('x')}`)
        v.assign(t)
      })
    })
    tf.dispose(Object.values(tensors))
    return net
  } catch (err) {
    net.dispose()
    throw err
  }
}
