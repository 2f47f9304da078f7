/**
 * The trainer's networks: a multi-layer perceptron and a small convolutional
 * net, with a hand-written backward pass.
 *
 * Why hand-written: on the WebAssembly backend (the default on these
 * machines) `tf.matMul` with `transposeA`/`transposeB` runs 10-50x slower than
 * the plain kernel, and the stock gradient of a dense layer uses exactly
 * those; the wasm backend also has no `Conv2DBackpropFilter` kernel at all
 * (stock autodiff of `conv2d` throws there) and its `MaxPoolGrad` and
 * `Conv2DBackpropInput` kernels are naive loops. So the backward pass below
 * uses only fast kernels: explicit `tf.transpose` then a plain `tf.matMul`,
 * convolution gradients written as forward convolutions, and the max-pool
 * gradient as one loop over host memory where the backend keeps tensors there
 * (wasm, cpu). It skips work the stock tape would also skip (no gradient for
 * the input batch) and needs no tape at all.
 *
 * The math is the stock math: mean softmax cross-entropy over the batch, the
 * gradient of the logits `(softmax - y) / batch` as in
 * `tf.losses.softmaxCrossEntropy`, ReLU gradient `step(z)`, and max-pool
 * gradient to the first maximum of each window in row-major order (as the cpu
 * and native TensorFlow kernels do; the wasm kernel picks the last).
 */
import * as tf from '@tensorflow/tfjs'
import { fastWasmKernelsRegistered } from './kernels.ts'

export type ModelPreset = 'mlp' | 'cnn' | 'gpt'

export interface ModelConfig {
  preset: ModelPreset
  /** Hidden layer widths for mlp (e.g. [128]); for cnn, the dense widths after the conv stack. */
  hidden: number[]
  /** [features] for mlp, [height, width, channels] for cnn; a flat [batch, features] input is reshaped as needed. */
  inputShape: number[]
  classes: number
  /** Deterministic initialisation: glorot uniform kernels from this seed, zero biases. */
  seed: number
}

export interface Net {
  /** A preset's config, or (a user's Layers model, layers-net.ts) `{ preset: 'layers', model: 'mdl-…', … }`. */
  readonly config: ModelConfig | { preset: 'layers', model: string, inputShape: number[], classes: number, seed: number }
  /**
   * All parameters, in a fixed order (per layer: kernel, bias), with stable names. Trainable ones first; a
   * variable with `trainable` false (batch normalisation's moving statistics) is state the swarm averages.
   */
  readonly variables: tf.Variable[]
  /** What the exported model outputs: logits (the presets), or probabilities (a user model ending in softmax). */
  readonly outputs?: 'logits' | 'probabilities'
  /** Logits for a flat [batch, features] input. */
  predict (x: tf.Tensor2D): tf.Tensor2D
  /**
   * Mean softmax cross-entropy of one batch and its gradient for each
   * variable (same order as `variables`); for a non-trainable variable, its
   * value after this step's update instead of a gradient (the trainer assigns
   * it). `y` is one-hot [batch, classes]; `step` seeds dropout masks.
   * The caller disposes the returned tensors.
   */
  lossAndGrads (x: tf.Tensor2D, y: tf.Tensor2D, step?: number): { loss: tf.Scalar, grads: tf.Tensor[] }
  /** Fraction of rows whose arg-max logit is the arg-max of `y`. */
  accuracy (x: tf.Tensor2D, y: tf.Tensor2D): number
  /**
   * A plain tf.Sequential with the same architecture and a copy of the
   * current weights. Its output is the logits (linear last layer): compile it
   * with `tf.losses.softmaxCrossEntropy` as the loss.
   */
  toLayersModel (): tf.LayersModel
  /**
   * For nets whose rows are not (features → class) pairs (a language model,
   * gpt.ts): mean loss and accuracy over `n` rows of `x`, in batches.
   * Evaluation uses it instead of `predict` where it is there.
   */
  evaluateRows?: (x: Float32Array, n: number) => { loss: number, accuracy: number }
  /**
   * What the model asks for after every update of its weights (the trainer
   * calls it after the optimizer's step and after an outer step): a Layers
   * model's weight constraints (kernelConstraint…), projected as Keras does.
   */
  afterUpdate?: () => void
  dispose (): void
}

/** The cnn preset's convolutions: valid padding, stride 1, ReLU, then a 2x2 max-pool each. */
export const CNN_CONVS: ReadonlyArray<{ filters: number, kernel: number }> = [
  { filters: 8, kernel: 5 },
  { filters: 16, kernel: 3 }
]
const POOL = 2

interface Layer {
  kernel: tf.Variable
  bias: tf.Variable
}

/** What the forward pass keeps for the backward pass. */
interface Trace {
  /** Input of each conv layer (NHWC). */
  convIn: tf.Tensor4D[]
  /** ReLU output of each conv layer, before pooling. */
  convOut: tf.Tensor4D[]
  /** Pooled output of each conv layer. */
  pooled: tf.Tensor4D[]
  /** Input of each dense layer. */
  denseIn: tf.Tensor2D[]
}

export function createNet (config: ModelConfig): Net {
  return new FastNet(config)
}

export function parameterCount (net: Net): number {
  return net.variables.reduce((n, v) => n + v.size, 0)
}

class FastNet implements Net {
  readonly config: ModelConfig
  readonly variables: tf.Variable[]
  private readonly convs: Layer[] = []
  private readonly denses: Layer[] = []
  /** [height, width, channels] of the conv stack's input; null for mlp. */
  private readonly image: [number, number, number] | null

  constructor (config: ModelConfig) {
    validate(config)
    this.config = { ...config, hidden: [...config.hidden], inputShape: [...config.inputShape] }
    const { preset, hidden, classes, seed } = this.config
    const shapes: Array<{ layer: string, kernel: number[] }> = []
    let features: number
    if (preset === 'cnn') {
      const [h, w, c] = this.config.inputShape
      this.image = [h, w, c]
      let [hh, ww, cc] = [h, w, c]
      CNN_CONVS.forEach((conv, i) => {
        shapes.push({ layer: `conv${i}`, kernel: [conv.kernel, conv.kernel, cc, conv.filters] })
        hh = Math.floor((hh - conv.kernel + 1) / POOL)
        ww = Math.floor((ww - conv.kernel + 1) / POOL)
        cc = conv.filters
      })
      features = hh * ww * cc
    } else {
      this.image = null
      features = this.config.inputShape.reduce((a, b) => a * b, 1)
    }
    const widths = [...hidden, classes]
    widths.forEach((units, i) => {
      shapes.push({ layer: `dense${i}`, kernel: [i === 0 ? features : widths[i - 1], units] })
    })

    const variables: tf.Variable[] = []
    shapes.forEach(({ layer, kernel }, i) => {
      const init = tf.initializers.glorotUniform({ seed: layerSeed(seed, i) })
      const k = makeVariable(init.apply(kernel), `${preset}/${layer}/kernel`)
      const b = makeVariable(tf.zeros([kernel[kernel.length - 1]]), `${preset}/${layer}/bias`)
      variables.push(k, b)
      const params = { kernel: k, bias: b };
      (layer.startsWith('conv') ? this.convs : this.denses).push(params)
    })
    this.variables = variables
  }

  predict (x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.forward(x, null))
  }

  lossAndGrads (x: tf.Tensor2D, y: tf.Tensor2D): { loss: tf.Scalar, grads: tf.Tensor[] } {
    return tf.tidy(() => {
      const trace: Trace = { convIn: [], convOut: [], pooled: [], denseIn: [] }
      const logits = this.forward(x, trace)
      const batch = logits.shape[0]
      const logp = tf.logSoftmax(logits)
      const loss = tf.div(tf.neg(tf.sum(tf.mul(y, logp))), batch) as tf.Scalar
      let d: tf.Tensor = tf.div(tf.sub(tf.exp(logp), y), batch)

      const denseGrads: tf.Tensor[] = []
      for (let l = this.denses.length - 1; l >= 0; l--) {
        const input = trace.denseIn[l]
        denseGrads.unshift(matMulAT(input, d as tf.Tensor2D), tf.sum(d, 0))
        if (l === 0 && this.image === null) break
        const dInput = matMulBT(d as tf.Tensor2D, this.denses[l].kernel as tf.Tensor2D)
        d = l > 0 ? tf.mul(dInput, tf.step(input)) : dInput
      }

      const convGrads: tf.Tensor[] = []
      if (this.image !== null) {
        const last = this.convs.length - 1
        d = tf.reshape(d, trace.pooled[last].shape)
        for (let l = last; l >= 0; l--) {
          // ReLU's gradient at a window's maximum is step(maximum): applied to the pooled gradient, a quarter of the size;
          // each window's masked gradient lands on one element of dz, so the bias gradient sums the masked one
          const masked = tf.mul(d, tf.step(trace.pooled[l])) as tf.Tensor4D
          const dz = maxPoolGrad(masked, trace.convOut[l], trace.pooled[l])
          convGrads.unshift(conv2dFilterGrad(trace.convIn[l], dz), tf.sum(masked, [0, 1, 2]))
          if (l > 0) d = conv2dInputGrad(dz, this.convs[l].kernel as tf.Tensor4D)
        }
      }
      return { loss, grads: [...convGrads, ...denseGrads] }
    })
  }

  accuracy (x: tf.Tensor2D, y: tf.Tensor2D): number {
    const correct = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(this.forward(x, null), 1), tf.argMax(y, 1)), 'float32')))
    const value = correct.dataSync()[0]
    correct.dispose()
    return value
  }

  toLayersModel (): tf.LayersModel {
    const model = tf.sequential()
    if (this.image !== null) {
      const flat = this.image[0] * this.image[1] * this.image[2]
      model.add(tf.layers.reshape({ targetShape: this.image, inputShape: [flat] }))
      for (const conv of CNN_CONVS) {
        model.add(tf.layers.conv2d({ filters: conv.filters, kernelSize: conv.kernel, strides: 1, padding: 'valid', activation: 'relu' }))
        model.add(tf.layers.maxPooling2d({ poolSize: POOL, strides: POOL, padding: 'valid' }))
      }
      model.add(tf.layers.flatten())
    } else {
      const features = this.config.inputShape.reduce((a, b) => a * b, 1)
      model.add(tf.layers.inputLayer({ inputShape: [features] }))
    }
    this.denses.forEach((layer, i) => {
      const last = i === this.denses.length - 1
      model.add(tf.layers.dense({ units: (layer.kernel as tf.Tensor2D).shape[1], activation: last ? 'linear' : 'relu' }))
    })
    model.setWeights(this.variables)
    return model
  }

  dispose (): void {
    for (const v of this.variables) v.dispose()
  }

  /** Logits; with a trace, keeps what the backward pass needs. */
  private forward (x: tf.Tensor2D, trace: Trace | null): tf.Tensor2D {
    let h: tf.Tensor2D = x
    if (this.image !== null) {
      let a = tf.reshape(x, [x.shape[0], ...this.image]) as tf.Tensor4D
      for (const conv of this.convs) {
        trace?.convIn.push(a)
        const z = tf.fused.conv2d({ x: a, filter: conv.kernel as tf.Tensor4D, strides: 1, pad: 'valid', bias: conv.bias, activation: 'relu' })
        trace?.convOut.push(z)
        a = tf.maxPool(z, POOL, POOL, 'valid')
        trace?.pooled.push(a)
      }
      h = tf.reshape(a, [x.shape[0], -1])
    }
    this.denses.forEach((layer, i) => {
      trace?.denseIn.push(h)
      const last = i === this.denses.length - 1
      h = tf.fused.matMul({ a: h, b: layer.kernel as tf.Tensor2D, bias: layer.bias, activation: last ? 'linear' : 'relu' }) as tf.Tensor2D
    })
    return h
  }
}

function validate (config: ModelConfig): void {
  const positiveInts = (xs: number[]): boolean => xs.every(n => Number.isInteger(n) && n > 0)
  if (config.preset !== 'mlp' && config.preset !== 'cnn') throw new RangeError(`unknown model preset "${String(config.preset)}"`)
  if (!positiveInts(config.hidden)) throw new RangeError('hidden widths must be positive integers')
  if (!positiveInts(config.inputShape) || config.inputShape.length === 0) throw new RangeError('inputShape must be positive integers')
  if (!Number.isInteger(config.classes) || config.classes < 2) throw new RangeError('classes must be an integer >= 2')
  if (config.preset === 'cnn') {
    if (config.inputShape.length !== 3) throw new RangeError('cnn needs inputShape [height, width, channels]')
    let [h, w] = config.inputShape
    for (const conv of CNN_CONVS) {
      h = Math.floor((h - conv.kernel + 1) / POOL)
      w = Math.floor((w - conv.kernel + 1) / POOL)
    }
    if (h < 1 || w < 1) throw new RangeError(`cnn input ${config.inputShape.join('x')} is too small for its conv stack`)
  }
}

/** A seed per layer, mixed so that (seed, layer) pairs do not collide in the obvious ways. */
function layerSeed (seed: number, layer: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ (layer + 1), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * A trainable variable named `name`, or `name_1`, `name_2`, … when another
 * live net holds that name already (TensorFlow.js names are process-wide).
 */
function makeVariable (value: tf.Tensor, name: string): tf.Variable {
  const taken = tf.engine().registeredVariables
  let unique = name
  for (let i = 1; taken[unique] !== undefined; i++) unique = `${name}_${i}`
  const v = tf.variable(value, true, unique)
  value.dispose()
  return v
}

/**
 * True where matMul's transpose flags are slow: wasm runs them as a naive
 * loop, 10-50x slower than its XNNPACK kernel for the plain product.
 */
function slowTransposedMatMul (): boolean {
  return tf.getBackend() === 'wasm'
}

/** aᵀ·b */
function matMulAT (a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return slowTransposedMatMul() ? tf.matMul(tf.transpose(a), b) : tf.matMul(a, b, true, false)
}

/**
 * a·bᵀ, for a batch-sized `a` and a kernel `b`. On wasm as (b·aᵀ)ᵀ:
 * transposing the two batch-sized operands is far cheaper there than
 * transposing a large kernel (1024x1024: ~12 ms).
 */
function matMulBT (a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return slowTransposedMatMul() ? tf.transpose(tf.matMul(b, tf.transpose(a))) as tf.Tensor2D : tf.matMul(a, b, false, true)
}

/** Backends whose tensors live in host-reachable memory, so dataSync is a cheap copy. */
function hostBackend (): boolean {
  const name = tf.getBackend()
  return name === 'wasm' || name === 'cpu'
}

/**
 * Gradient through `pooled = maxPool(relu(z), 2, 2, 'valid')` with respect to
 * z, given the layer's ReLU output and the gradient `dy` of `pooled` already
 * masked by ReLU's gradient (zero where the window's maximum is not positive):
 * each window's dy goes to its first maximum in row-major order.
 */
function maxPoolGrad (dy: tf.Tensor4D, activation: tf.Tensor4D, pooled: tf.Tensor4D): tf.Tensor4D {
  if (!hostBackend() || fastWasm()) { // kernels.ts's MaxPoolGrad loops over the wasm heap: no copies out and back
    return tf.engine().runKernel('MaxPoolGrad', { dy, input: activation, output: pooled }, { filterSize: [POOL, POOL], strides: [POOL, POOL], pad: 'valid' }) as tf.Tensor4D
  }
  const [batch, inH, inW, channels] = activation.shape
  const [, outH, outW] = pooled.shape
  const a = activation.dataSync() as Float32Array
  const p = pooled.dataSync() as Float32Array
  const g = dy.dataSync() as Float32Array
  const out = new Float32Array(a.length)
  const row = inW * channels
  let o = 0
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < outH; i++) {
      const base = (b * inH + POOL * i) * row
      for (let j = 0; j < outW; j++) {
        const p0 = base + POOL * j * channels
        for (let c = 0; c < channels; c++, o++) {
          const m = p[o]
          if (!(m > 0)) continue // ReLU's gradient is zero where the maximum is zero
          const q = p0 + c
          // the first maximum in row-major window order, as the stock kernels pick it
          const at = a[q] === m ? q : a[q + channels] === m ? q + channels : a[q + row] === m ? q + row : q + row + channels
          out[at] = g[o]
        }
      }
    }
  }
  return tf.tensor4d(out, activation.shape)
}

/** On wasm with kernels.ts's kernels (im2col filter gradient, spread-and-convolve input gradient): use them. */
function fastWasm (): boolean {
  return tf.getBackend() === 'wasm' && fastWasmKernelsRegistered()
}

/**
 * dL/dW of a valid, stride-1 conv2d, as one forward convolution: the batch
 * becomes the channel axis, so that dy slides over x as a filter.
 */
function conv2dFilterGrad (x: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor4D {
  if (fastWasm()) {
    const filterShape = [x.shape[1] - dy.shape[1] + 1, x.shape[2] - dy.shape[2] + 1, x.shape[3], dy.shape[3]]
    return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', filterShape }) as tf.Tensor4D
  }
  const xT = tf.transpose(x, [3, 1, 2, 0]) // [inC, H, W, batch]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]) // [outH, outW, batch, outC]
  return tf.transpose(tf.conv2d(xT, dyT, 1, 'valid'), [1, 2, 0, 3]) // [kH, kW, inC, outC]
}

/**
 * dL/dx of a valid, stride-1 conv2d, as one forward ("full") convolution of
 * the zero-padded dy with the kernel rotated by 180 degrees and its channel
 * axes swapped.
 */
function conv2dInputGrad (dy: tf.Tensor4D, kernel: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw] = kernel.shape
  if (fastWasm()) {
    const inputShape = [dy.shape[0], dy.shape[1] + kh - 1, dy.shape[2] + kw - 1, kernel.shape[2]]
    return tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: kernel }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', inputShape }) as tf.Tensor4D
  }
  const rotated = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D
  const padded = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
  return tf.conv2d(padded, rotated, 1, 'valid')
}
