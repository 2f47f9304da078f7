/**
 * A Net over the user's own TensorFlow.js Layers model (what `model.save()`
 * writes and `tensorflowjs_converter` produces from Keras): the trainer trains
 * it as it trains the presets, with stock autodiff (`tf.variableGrads`) over
 * its trainable weights. On wasm the kernels of kernels.ts make that fast.
 *
 * What it does to the user's model, and why:
 *
 * - The loss is mean softmax cross-entropy on logits. A model whose output
 *   layer ends in a softmax (a Dense with `activation: 'softmax'`, an
 *   `Activation('softmax')` or a `Softmax` layer) is trained with that softmax
 *   taken off (numerically stable, the same gradient), and exported with it
 *   put back. Other output activations (sigmoid, relu…) are refused.
 * - Without weights the model is initialised from the job's seed: every
 *   random initializer in the topology gets a seed drawn from it, in the
 *   topology's order, so every member builds the same weights.
 * - Non-trainable weights (batch normalisation's moving mean and variance, a
 *   frozen layer's weights) are state the swarm averages: `lossAndGrads`
 *   returns their value after the step's update (as the layer computed it on
 *   this member's batch) in place of a gradient, puts the old value back, and
 *   the trainer assigns the swarm's sample-weighted average when it applies
 *   the update. Every member holds the same moving statistics after every
 *   round, and they travel with the weights in checkpoints and state syncs.
 * - Weight constraints (`kernelConstraint`, `biasConstraint`, batch norm's
 *   `gammaConstraint`…) are projected after every update, as Keras does
 *   (tf.js's own model.fit leaves them out: its optimizer writes the
 *   variables directly): the trainer calls `afterUpdate`, on every member
 *   alike, so weights stay identical.
 * - Dropout-like layers with a `seed` get a fresh seed each step from the job
 *   seed, the layer and the step: masks are deterministic per step (the same
 *   on every member, applied to different rows), and weights stay identical
 *   because the gradients are all-reduced anyway.
 */
import * as tf from '@tensorflow/tfjs'
import type { Net } from './model.ts'

/** The parts of a stored model a Net is built from (node/models keeps them on disk). */
export interface LayersModelSource {
  /** The model's id (`mdl-…`). */
  id: string
  /** `modelTopology` of model.json, as written (snake_case keys, possibly wrapped in `model_config`). */
  modelTopology: Record<string, unknown>
  /** The weights and their specs (float32, in spec order); null: initialise from the seed. */
  weights: { specs: tf.io.WeightsManifestEntry[], data: ArrayBuffer } | null
}

export interface LayersNetConfig {
  preset: 'layers'
  /** The model's id. */
  model: string
  /** The model's input shape without the batch axis. */
  inputShape: number[]
  classes: number
  seed: number
}

/** A model file that TensorFlow.js cannot train here; `layer` names the layer at fault, where one is. */
export class InvalidModelError extends Error {
  override name = 'InvalidModelError'
  readonly layer: string | null
  constructor (message: string, layer: string | null = null) {
    super(message)
    this.layer = layer
  }
}

type Json = Record<string, unknown>

/** What `inspectTopology` finds. */
export interface TopologyInfo {
  /** Every layer, nested ones included, as `name (Class)`. */
  layers: Array<{ name: string, className: string }>
  /** The output layer and what its activation is. */
  output: { name: string, className: string, activation: 'softmax' | 'linear' }
}

/** Initializers whose config takes a seed. */
const SEEDED_INITIALIZERS = new Set([
  'RandomUniform', 'RandomNormal', 'TruncatedNormal', 'VarianceScaling', 'GlorotUniform', 'GlorotNormal', 'HeNormal',
  'HeUniform', 'LeCunNormal', 'LeCunUniform', 'Orthogonal'
])
const MODEL_CLASSES = new Set(['Sequential', 'Model', 'Functional'])

function isObject (v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The topology itself: unwraps Keras's `{ model_config: … }`. */
function modelConfigOf (topology: Json): Json {
  return isObject(topology.model_config) ? topology.model_config : topology
}

/** The layer configs of a model config (Sequential: a list, or `config.layers`; functional: `config.layers`). */
function layersOf (model: Json): Json[] {
  const config = model.config
  if (Array.isArray(config)) return config.filter(isObject)
  if (isObject(config) && Array.isArray(config.layers)) return config.layers.filter(isObject)
  throw new InvalidModelError(`the ${String(model.class_name)} model has no layer list (config.layers)`)
}

function layerName (layer: Json): string {
  const config = isObject(layer.config) ? layer.config : {}
  return typeof config.name === 'string' ? config.name : typeof layer.name === 'string' ? layer.name : '(unnamed)'
}

/** Layer class names TensorFlow.js can build. */
function knownLayerClasses (): Set<string> {
  const map = tf.serialization.SerializationMap.getMap().classNameMap
  return new Set(Object.keys(map).filter(k => (map[k][0] as unknown as { prototype: unknown }).prototype instanceof tf.layers.Layer))
}

/**
 * Checks a topology's structure without building it: every layer is one
 * TensorFlow.js has, one input, one output whose activation is softmax or
 * linear. Throws InvalidModelError naming the layer at fault.
 */
export function inspectTopology (topology: Json): TopologyInfo {
  const root = modelConfigOf(topology)
  if (typeof root.class_name !== 'string') throw new InvalidModelError('modelTopology has no class_name (expected a Sequential or functional Keras/TF.js Layers model)')
  const known = knownLayerClasses()
  const layers: TopologyInfo['layers'] = []
  const visit = (layer: Json): void => {
    const className = String(layer.class_name)
    const name = layerName(layer)
    if (MODEL_CLASSES.has(className)) {
      for (const inner of layersOf(layer)) visit(inner)
    } else if (!known.has(className)) {
      throw new InvalidModelError(`unsupported layer "${name}" (class ${className}): TensorFlow.js has no layer of that class`, name)
    }
    layers.push({ name, className })
    const config = isObject(layer.config) ? layer.config : {}
    if (isObject(config.layer)) visit(config.layer) // TimeDistributed, Bidirectional
  }
  if (!MODEL_CLASSES.has(root.class_name)) throw new InvalidModelError(`modelTopology is a ${root.class_name}, not a Sequential or functional model`)
  for (const layer of layersOf(root)) visit(layer)
  const out = outputLayer(root)
  const className = String(out.class_name)
  const config = isObject(out.config) ? out.config : {}
  const name = layerName(out)
  let activation: 'softmax' | 'linear'
  if (className === 'Softmax') activation = 'softmax'
  else if (config.activation === undefined || config.activation === null) activation = 'linear'
  else if (config.activation === 'softmax' || config.activation === 'linear') activation = config.activation
  else throw new InvalidModelError(`the output layer "${name}" (${className}) ends in a ${String(config.activation)} activation: peer trains with softmax cross-entropy, so the output must be softmax or linear (logits)`, name)
  return { layers, output: { name, className, activation } }
}

/** The output layer's config (inside nested models too). */
function outputLayer (model: Json): Json {
  const layers = layersOf(model)
  if (layers.length === 0) throw new InvalidModelError(`the ${String(model.class_name)} model has no layers`)
  let out: Json
  if (model.class_name === 'Sequential') {
    out = layers[layers.length - 1]
  } else {
    const config = isObject(model.config) ? model.config : {}
    const outputs = Array.isArray(config.output_layers) ? config.output_layers : []
    // [name, node, tensor] or a list of them
    const list = outputs.length > 0 && typeof outputs[0] === 'string' ? [outputs] : outputs
    const inputs = Array.isArray(config.input_layers) ? config.input_layers : []
    const inputList = inputs.length > 0 && typeof inputs[0] === 'string' ? [inputs] : inputs
    if (list.length !== 1) throw new InvalidModelError(`the model has ${list.length} outputs: peer trains models with one output`)
    if (inputList.length !== 1) throw new InvalidModelError(`the model has ${inputList.length} inputs: peer trains models with one input`)
    const name = (list[0] as unknown[])[0]
    const found = layers.find(l => layerName(l) === name)
    if (found === undefined) throw new InvalidModelError(`the output layer "${String(name)}" is not among the model's layers`)
    out = found
  }
  return MODEL_CLASSES.has(String(out.class_name)) ? outputLayer(out) : out
}

/** A seed per (job seed, index), mixed so that the pairs do not collide in the obvious ways. */
function mixSeed (seed: number, index: number, salt = 0): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ (index + 1), 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16) ^ salt, 0x27d4eb2f)
  return (h ^ (h >>> 15)) >>> 0
}

/** A copy of the topology for training: seeded initializers, and the output's softmax taken off. */
function trainingTopology (topology: Json, seed: number): Json {
  const copy = structuredClone(modelConfigOf(topology))
  let n = 0
  const seedAll = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(seedAll); return }
    if (!isObject(v)) return
    for (const [key, value] of Object.entries(v)) {
      if (key.endsWith('_initializer') && isObject(value) && SEEDED_INITIALIZERS.has(String(value.class_name))) {
        value.config = { ...(isObject(value.config) ? value.config : {}), seed: mixSeed(seed, n++) }
      } else {
        seedAll(value)
      }
    }
  }
  seedAll(copy)
  const out = outputLayer(copy)
  const config = isObject(out.config) ? out.config : {}
  if (out.class_name === 'Softmax') {
    out.class_name = 'Activation'
    out.config = { name: config.name, trainable: config.trainable ?? true, dtype: config.dtype ?? 'float32', activation: 'linear' }
  } else if (config.activation === 'softmax') {
    config.activation = 'linear'
  }
  return copy
}

/** Every layer of a built model, nested models and wrapped layers included. */
function allLayers (model: tf.LayersModel): tf.layers.Layer[] {
  const out: tf.layers.Layer[] = []
  const visit = (layer: tf.layers.Layer): void => {
    out.push(layer)
    if (layer instanceof tf.LayersModel) for (const inner of layer.layers) visit(inner)
    const wrapped = (layer as unknown as { layer?: unknown }).layer
    if (wrapped instanceof tf.layers.Layer) visit(wrapped)
  }
  for (const layer of model.layers) visit(layer)
  return out
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The training copy of the model (softmax off, seeded), its weights loaded; InvalidModelError where that fails. */
async function buildModel (source: LayersModelSource, seed: number): Promise<{ model: tf.LayersModel, info: TopologyInfo }> {
  const info = inspectTopology(source.modelTopology)
  let model: tf.LayersModel
  try {
    model = await tf.models.modelFromJSON({ modelTopology: trainingTopology(source.modelTopology, seed) } as unknown as tf.io.ModelJSON)
  } catch (err) {
    throw new InvalidModelError(`${source.id}: TensorFlow.js cannot build the model: ${describe(err)}`)
  }
  if (source.weights === null) return { model, info }
  let named: tf.NamedTensorMap = {}
  try {
    named = tf.io.decodeWeights(source.weights.data, source.weights.specs)
    model.loadWeights(named, true)
  } catch (err) {
    model.dispose()
    throw new InvalidModelError(`${source.id}: the weights do not fit the layers: ${describe(err)}`)
  } finally {
    tf.dispose(Object.values(named))
  }
  return { model, info }
}

/**
 * Builds the model once and throws it away: InvalidModelError, naming the
 * layer where one is at fault, for anything TensorFlow.js cannot build or
 * whose weights do not fit. Returns what the topology holds.
 */
export async function checkLayersModel (source: LayersModelSource): Promise<TopologyInfo & { parameters: number, inputShape: Array<number | null>, outputShape: Array<number | null> }> {
  const { model, info } = await buildModel(source, 0)
  try {
    return { ...info, parameters: model.countParams(), inputShape: model.inputs[0]?.shape.slice(1) ?? [], outputShape: model.outputs[0]?.shape.slice(1) ?? [] }
  } finally {
    model.dispose()
  }
}

/**
 * Builds the Net of a stored model for a data set of `features` columns and
 * `classes` classes. Throws InvalidModelError when the model cannot be built,
 * its weights do not fit it, or its input or output do not fit the data.
 */
export async function createLayersNet (source: LayersModelSource, opts: { features: number, classes: number, seed: number }): Promise<Net> {
  const { model, info } = await buildModel(source, opts.seed)
  try {
    // the export keeps the user's own output (softmax put back): its config, to build a copy synchronously
    const template = await tf.models.modelFromJSON({ modelTopology: structuredClone(modelConfigOf(source.modelTopology)) } as unknown as tf.io.ModelJSON)
    const exportClass = template instanceof tf.Sequential ? tf.Sequential : tf.LayersModel
    const exportConfig = template.getConfig()
    template.dispose()
    return new LayersNet(source.id, model, info, exportClass, exportConfig, opts)
  } catch (err) {
    model.dispose()
    throw err
  }
}

class LayersNet implements Net {
  readonly config: LayersNetConfig
  readonly variables: tf.Variable[]
  readonly outputs: 'logits' | 'probabilities'
  private readonly model: tf.LayersModel
  private readonly trainable: tf.Variable[]
  private readonly state: tf.Variable[]
  private readonly inputShape: number[]
  private readonly dropouts: Array<{ layer: { seed?: number }, index: number }>
  private readonly constrained: Array<{ variable: tf.Variable, constraint: { apply: (w: tf.Tensor) => tf.Tensor } }>
  private readonly seed: number
  private readonly exportClass: typeof tf.LayersModel
  private readonly exportConfig: tf.serialization.ConfigDict
  private steps = 0

  constructor (id: string, model: tf.LayersModel, info: TopologyInfo, exportClass: typeof tf.LayersModel, exportConfig: tf.serialization.ConfigDict, opts: { features: number, classes: number, seed: number }) {
    if (model.inputs.length !== 1 || model.outputs.length !== 1) throw new InvalidModelError(`model ${id} has ${model.inputs.length} inputs and ${model.outputs.length} outputs: peer trains models with one of each`)
    const inputShape = model.inputs[0].shape.slice(1)
    if (inputShape.some(d => d === null)) throw new InvalidModelError(`model ${id}: its input shape [${inputShape.map(d => d ?? 'None').join(', ')}] must be fixed (no None past the batch axis)`)
    const size = (inputShape as number[]).reduce((a, b) => a * b, 1)
    if (size !== opts.features) throw new InvalidModelError(`model ${id}: its input [${inputShape.join(', ')}] takes ${size} values per example, the data set has ${opts.features} features`)
    const outShape = model.outputs[0].shape
    if (outShape.length !== 2 || outShape[1] !== opts.classes) throw new InvalidModelError(`model ${id}: its output layer "${info.output.name}" gives shape [${outShape.map(d => d ?? 'None').join(', ')}], the data set has ${opts.classes} classes (expected [None, ${opts.classes}])`, info.output.name)
    this.model = model
    this.inputShape = inputShape as number[]
    this.config = { preset: 'layers', model: id, inputShape: [...this.inputShape], classes: opts.classes, seed: opts.seed }
    this.outputs = info.output.activation === 'softmax' ? 'probabilities' : 'logits'
    this.trainable = model.trainableWeights.map(w => w.read() as tf.Variable)
    this.state = model.nonTrainableWeights.map(w => w.read() as tf.Variable)
    this.variables = [...this.trainable, ...this.state]
    this.dropouts = allLayers(model)
      .map((layer, index) => ({ layer: layer as unknown as { seed?: number, rate?: number }, index }))
      .filter(({ layer }) => 'seed' in layer && 'rate' in layer)
    this.constrained = model.trainableWeights.flatMap(w => {
      const constraint = (w as unknown as { constraint?: { apply: (w: tf.Tensor) => tf.Tensor } | null }).constraint
      return constraint != null ? [{ variable: w.read() as tf.Variable, constraint }] : []
    })
    if (this.constrained.length === 0) this.afterUpdate = undefined
    this.seed = opts.seed
    this.exportClass = exportClass
    this.exportConfig = exportConfig
  }

  predict (x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.model.apply(this.reshape(x), { training: false }) as tf.Tensor2D)
  }

  lossAndGrads (x: tf.Tensor2D, y: tf.Tensor2D, step?: number): { loss: tf.Scalar, grads: tf.Tensor[] } {
    const at = step ?? this.steps
    this.steps = at + 1
    for (const { layer, index } of this.dropouts) layer.seed = mixSeed(this.seed, index, at + 1)
    return tf.tidy(() => {
      // the layers update their moving statistics while training: keep the old values to put back
      const before = this.state.map(v => tf.clone(v))
      const input = this.reshape(x)
      const { value, grads } = tf.variableGrads(() => {
        const logits = this.model.apply(input, { training: true }) as tf.Tensor2D
        let loss = tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar
        const penalties = this.model.calculateLosses()
        if (penalties.length > 0) loss = tf.add(loss, tf.addN(penalties)) as tf.Scalar
        return loss
      }, this.trainable)
      const after = this.state.map(v => tf.clone(v))
      this.state.forEach((v, i) => { v.assign(before[i]) })
      return { loss: value, grads: [...this.trainable.map(v => grads[v.name]), ...after] }
    })
  }

  /** Projects the constrained weights (where there are none, the constructor removes this). */
  afterUpdate?: () => void = () => {
    tf.tidy(() => {
      for (const { variable, constraint } of this.constrained) variable.assign(constraint.apply(variable))
    })
  }

  accuracy (x: tf.Tensor2D, y: tf.Tensor2D): number {
    const correct = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(this.predict(x), 1), tf.argMax(y, 1)), 'float32')))
    const value = correct.dataSync()[0]
    correct.dispose()
    return value
  }

  /** The user's model (its own output activation) with a copy of the current weights. */
  toLayersModel (): tf.LayersModel {
    const copy = this.exportClass.fromConfig(this.exportClass, structuredClone(this.exportConfig), {}, true) as tf.LayersModel
    copy.setWeights(this.model.weights.map(w => w.read()))
    return copy
  }

  dispose (): void {
    this.model.dispose()
  }

  private reshape (x: tf.Tensor2D): tf.Tensor {
    return this.inputShape.length === 1 ? x : tf.reshape(x, [x.shape[0], ...this.inputShape])
  }
}
