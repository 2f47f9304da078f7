/**
 * A GPT-style language model as a trainer Net: a decoder-only transformer on
 * byte tokens (vocabulary 256, so no tokenizer or vocabulary file is needed).
 *
 * Architecture (GPT-2's, small): token and learned position embeddings; per
 * block, pre-layer-norm causal multi-head self-attention and a pre-layer-norm
 * MLP (4·dim, GELU in its sigmoid approximation), each added to the residual stream; a
 * final layer norm; the output head is the token embedding transposed (weight
 * tying). No dropout: every member computes the same gradient from the same
 * rows, bit for bit.
 *
 * Rows: a data row is `context + 1` byte token ids stored as floats (an LM
 * data set, see node/data/lm.ts); the net reads the inputs `x[:, :-1]` and
 * predicts the targets `x[:, 1:]`. The loss is the mean cross-entropy per
 * token in nats; the one-hot `y` a batch carries (its class is the row's last
 * token) is not used.
 *
 * The backward pass is TensorFlow.js's autodiff (`tf.variableGrads`). Matrix
 * products are 2-D (`[batch·time, dim] · [dim, n]`) except the two inside
 * attention (`q·kᵀ` and `p·v` per batch row and head), which are batched.
 *
 * Initialisation is deterministic from the job's seed (GPT-2's: normal with
 * σ = 0.02, the residual projections scaled by 1/√(2·layers), zero biases,
 * unit layer-norm gains).
 */
import * as tf from '@tensorflow/tfjs'
import { GPT_DEFAULTS } from '../../protocols/job/index.ts'
import type { ModelConfig, Net } from './model.ts'

/** Byte tokens. */
export const GPT_VOCAB = 256
/** The MLP's hidden width, as a multiple of dim (GPT-2's). */
const MLP_RATIO = 4
const LN_EPSILON = 1e-5
const INIT_STDDEV = 0.02
/** Rows per forward pass when evaluating: bounds the attention scores' memory ([rows·heads, T, T]). */
const EVAL_ROWS = 64
/** Tokens an evaluation reads at most: about 1-3 s of forward passes for the default model on one wasm thread. */
const MAX_EVAL_TOKENS = 131_072

export interface GptOptions {
  layers: number
  dim: number
  heads: number
  /** Tokens the model sees at once; a data row holds context + 1. */
  context: number
}

/** The job's gpt options with the defaults filled in; the context defaults to the data set's (rows of `features` tokens). */
export function gptOptionsOf (job: Partial<GptOptions> | undefined, features: number): GptOptions {
  return {
    layers: job?.layers ?? GPT_DEFAULTS.layers,
    dim: job?.dim ?? GPT_DEFAULTS.dim,
    heads: job?.heads ?? GPT_DEFAULTS.heads,
    context: job?.context ?? features - 1
  }
}

/** Throws RangeError naming the bad option. */
export function validateGpt (o: GptOptions): void {
  for (const key of ['layers', 'dim', 'heads', 'context'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new RangeError(`gpt ${key} must be a positive integer`)
  }
  if (o.dim % o.heads !== 0) throw new RangeError(`gpt dim (${o.dim}) must be a multiple of heads (${o.heads})`)
}

interface Block {
  ln1g: tf.Variable, ln1b: tf.Variable
  qkvW: tf.Variable, qkvB: tf.Variable
  projW: tf.Variable, projB: tf.Variable
  ln2g: tf.Variable, ln2b: tf.Variable
  fcW: tf.Variable, fcB: tf.Variable
  outW: tf.Variable, outB: tf.Variable
}

export function createGptNet (config: ModelConfig, options: GptOptions): GptNet {
  return new GptNet(config, options)
}

export class GptNet implements Net {
  readonly config: ModelConfig
  readonly options: GptOptions
  readonly variables: tf.Variable[] = []
  private readonly wte: tf.Variable
  private readonly wpe: tf.Variable
  private readonly blocks: Block[] = []
  private readonly lnfG: tf.Variable
  private readonly lnfB: tf.Variable
  /** The causal mask per sequence length: 0 on and below the diagonal, -1e9 above. */
  private readonly masks = new Map<number, tf.Tensor2D>()

  constructor (config: ModelConfig, options: GptOptions) {
    validateGpt(options)
    const { dim, layers, context } = options
    const features = config.inputShape.reduce((a, b) => a * b, 1)
    if (features !== context + 1) throw new RangeError(`gpt context ${context} needs rows of ${context + 1} tokens; the data set's rows have ${features} (import it with --lm --context ${features - 1}, or set the job's gpt.context to ${features - 1})`)
    if (config.classes !== GPT_VOCAB) throw new RangeError(`gpt needs a language-model data set (256 byte classes); this one has ${config.classes} classes`)
    this.config = { ...config, hidden: [...config.hidden], inputShape: [...config.inputShape] }
    this.options = { ...options }
    let n = 0
    const normal = (shape: number[], name: string, stddev = INIT_STDDEV): tf.Variable =>
      this.add(tf.initializers.randomNormal({ mean: 0, stddev, seed: paramSeed(config.seed, n++) }).apply(shape), name)
    const zeros = (shape: number[], name: string): tf.Variable => this.add(tf.zeros(shape), name)
    const ones = (shape: number[], name: string): tf.Variable => this.add(tf.ones(shape), name)
    const residual = INIT_STDDEV / Math.sqrt(2 * layers)
    this.wte = normal([GPT_VOCAB, dim], 'gpt/wte')
    this.wpe = normal([context, dim], 'gpt/wpe', INIT_STDDEV / 2)
    for (let l = 0; l < layers; l++) {
      const p = `gpt/h${l}`
      this.blocks.push({
        ln1g: ones([dim], `${p}/ln1/gamma`),
        ln1b: zeros([dim], `${p}/ln1/beta`),
        qkvW: normal([dim, 3 * dim], `${p}/attn/qkv/kernel`),
        qkvB: zeros([3 * dim], `${p}/attn/qkv/bias`),
        projW: normal([dim, dim], `${p}/attn/proj/kernel`, residual),
        projB: zeros([dim], `${p}/attn/proj/bias`),
        ln2g: ones([dim], `${p}/ln2/gamma`),
        ln2b: zeros([dim], `${p}/ln2/beta`),
        fcW: normal([dim, MLP_RATIO * dim], `${p}/mlp/fc/kernel`),
        fcB: zeros([MLP_RATIO * dim], `${p}/mlp/fc/bias`),
        outW: normal([MLP_RATIO * dim, dim], `${p}/mlp/proj/kernel`, residual),
        outB: zeros([dim], `${p}/mlp/proj/bias`)
      })
    }
    this.lnfG = ones([dim], 'gpt/lnf/gamma')
    this.lnfB = zeros([dim], 'gpt/lnf/beta')
  }

  /** Next-token logits at every position of the inputs `x[:, :-1]`: [batch · context, 256]. */
  predict (x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.logits(this.inputs(x)))
  }

  lossAndGrads (x: tf.Tensor2D, _y: tf.Tensor2D): { loss: tf.Scalar, grads: tf.Tensor[] } {
    return tf.tidy(() => {
      const ids = this.inputs(x)
      const targets = this.targets(x)
      const { value, grads } = tf.variableGrads(() => crossEntropy(this.logits(ids), targets), this.variables)
      return { loss: value, grads: this.variables.map(v => grads[v.name]) }
    })
  }

  /** Fraction of target tokens whose arg-max logit is the target. */
  accuracy (x: tf.Tensor2D, _y: tf.Tensor2D): number {
    return this.evaluateRows(x.dataSync() as Float32Array, x.shape[0]).accuracy
  }

  /**
   * Mean cross-entropy per token (nats) and next-token accuracy over `n` rows
   * of `context + 1` tokens, a few rows at a time. Beyond MAX_EVAL_TOKENS, over
   * that many tokens' worth of rows spread evenly over all of them (the same
   * rows on every member), so that an evaluation of a large held-out split
   * takes seconds, not minutes.
   */
  evaluateRows (x: Float32Array, n: number): { loss: number, accuracy: number } {
    const context = this.options.context
    const f = context + 1
    const used = Math.min(n, Math.max(1, Math.floor(MAX_EVAL_TOKENS / context)))
    const rowAt = (i: number): number => used === n ? i : Math.floor(i * n / used)
    let nats = 0
    let correct = 0
    for (let start = 0; start < used; start += EVAL_ROWS) {
      const rows = Math.min(EVAL_ROWS, used - start)
      const values = new Float32Array(rows * f)
      for (let i = 0; i < rows; i++) {
        const r = rowAt(start + i)
        values.set(x.subarray(r * f, (r + 1) * f), i * f)
      }
      const [sum, right] = tf.tidy(() => {
        const batch = tf.tensor2d(values, [rows, f])
        const targets = this.targets(batch)
        const logits = this.logits(this.inputs(batch))
        const logp = tf.logSoftmax(logits)
        const picked = tf.neg(tf.sum(tf.mul(tf.oneHot(targets, GPT_VOCAB), logp)))
        const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), targets), 'float32'))
        return [picked.dataSync()[0], hits.dataSync()[0]]
      })
      nats += sum
      correct += right
    }
    const tokens = n > 0 ? used * context : 0
    return { loss: tokens > 0 ? nats / tokens : 0, accuracy: tokens > 0 ? correct / tokens : 0 }
  }

  /**
   * Next-token logits after each of `sequences` (byte ids; each 1 … context
   * long, all the same length): [sequences, 256].
   */
  nextLogits (sequences: number[][]): Float32Array {
    const t = sequences[0]?.length ?? 0
    if (t < 1 || t > this.options.context || sequences.some(s => s.length !== t)) throw new RangeError(`sequences must hold 1 … ${this.options.context} tokens each, all the same length`)
    return tf.tidy(() => {
      const ids = tf.tensor2d(sequences.flat(), [sequences.length, t], 'int32')
      const logits = this.logits(ids).reshape([sequences.length, t, GPT_VOCAB])
      return logits.slice([0, t - 1, 0], [sequences.length, 1, GPT_VOCAB]).dataSync() as Float32Array
    })
  }

  toLayersModel (): tf.LayersModel {
    throw new Error('a gpt model has no TensorFlow.js layers form (it is saved in peer\'s own gpt format)')
  }

  dispose (): void {
    for (const v of this.variables) v.dispose()
    for (const m of this.masks.values()) m.dispose()
    this.masks.clear()
  }

  private add (value: tf.Tensor, name: string): tf.Variable {
    const taken = tf.engine().registeredVariables
    let unique = name
    for (let i = 1; taken[unique] !== undefined; i++) unique = `${name}_${i}`
    const v = tf.variable(value, true, unique)
    value.dispose()
    this.variables.push(v)
    return v
  }

  private inputs (x: tf.Tensor2D): tf.Tensor2D {
    const [b, f] = x.shape
    return tf.cast(tf.slice(x, [0, 0], [b, f - 1]), 'int32')
  }

  private targets (x: tf.Tensor2D): tf.Tensor1D {
    const [b, f] = x.shape
    return tf.reshape(tf.cast(tf.slice(x, [0, 1], [b, f - 1]), 'int32'), [-1])
  }

  private mask (t: number): tf.Tensor2D {
    let m = this.masks.get(t)
    if (m === undefined) {
      const values = new Float32Array(t * t)
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) values[i * t + j] = -1e9
      m = tf.keep(tf.tensor2d(values, [t, t]))
      this.masks.set(t, m)
    }
    return m
  }

  /** Logits [batch · t, 256] for int32 ids [batch, t]. */
  private logits (ids: tf.Tensor2D): tf.Tensor2D {
    const [b, t] = ids.shape
    const { dim, heads } = this.options
    const hd = dim / heads
    const rows = b * t
    const tok = tf.gather(this.wte, tf.reshape(ids, [-1])) // [b·t, dim]
    const pos = tf.slice(this.wpe, [0, 0], [t, dim])
    let h = tf.reshape(tf.add(tf.reshape(tok, [b, t, dim]), pos), [rows, dim]) as tf.Tensor2D
    const mask = this.mask(t)
    const scale = 1 / Math.sqrt(hd)
    for (const blk of this.blocks) {
      const a = layerNorm(h, blk.ln1g, blk.ln1b)
      const qkv = tf.add(tf.matMul(a, blk.qkvW as tf.Tensor2D), blk.qkvB) // [b·t, 3·dim]
      // q, k, v: [b·t, dim] column blocks → [b·heads, t, hd], each by a 4-D transpose (one rank-5 transpose
      // of all three is a slow loop on wasm: a fifth of a step)
      const [q, k, v] = tf.split(qkv, 3, 1).map(part => tf.reshape(tf.transpose(tf.reshape(part, [b, t, heads, hd]), [0, 2, 1, 3]), [b * heads, t, hd]) as tf.Tensor3D)
      const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask) // [b·heads, t, t]
      const att = tf.matMul(tf.softmax(scores), v) // [b·heads, t, hd]
      const merged = tf.reshape(tf.transpose(tf.reshape(att, [b, heads, t, hd]), [0, 2, 1, 3]), [rows, dim]) as tf.Tensor2D
      h = tf.add(h, tf.add(tf.matMul(merged, blk.projW as tf.Tensor2D), blk.projB))
      const m = layerNorm(h, blk.ln2g, blk.ln2b)
      const hidden = gelu(tf.add(tf.matMul(m, blk.fcW as tf.Tensor2D), blk.fcB))
      h = tf.add(h, tf.add(tf.matMul(hidden, blk.outW as tf.Tensor2D), blk.outB))
    }
    const out = layerNorm(h, this.lnfG, this.lnfB)
    // the tied head: out · wteᵀ, the transpose explicit (a [256, dim] copy; wasm's transposed product is slow)
    return tf.matMul(out, tf.transpose(this.wte) as tf.Tensor2D)
  }
}

/** Mean cross-entropy of logits [n, 256] against int32 targets [n]. */
function crossEntropy (logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const logp = tf.logSoftmax(logits)
  return tf.div(tf.neg(tf.sum(tf.mul(tf.oneHot(targets, GPT_VOCAB), logp))), targets.shape[0]) as tf.Scalar
}

function layerNorm (x: tf.Tensor2D, gamma: tf.Variable, beta: tf.Variable): tf.Tensor2D {
  const mean = tf.mean(x, -1, true)
  const centred = tf.sub(x, mean)
  const variance = tf.mean(tf.square(centred), -1, true)
  return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, LN_EPSILON))), gamma), beta)
}

/**
 * GELU in its sigmoid approximation x·σ(1.702·x) (Hendrycks and Gimpel's, within 0.02 of the exact one):
 * three kernels each way, 15% faster a step on wasm than the tanh form's eight.
 */
function gelu (x: tf.Tensor): tf.Tensor2D {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))) as tf.Tensor2D
}

/** A seed per parameter tensor (the same mixing as model.ts's per-layer seeds). */
function paramSeed (seed: number, index: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ (index + 1), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}
