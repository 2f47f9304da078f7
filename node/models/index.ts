/**
 * The user's own models: a TF.js Layers model (`peer start --model
 * path/model.json`, as `model.save()` writes it or `tensorflowjs_converter`
 * produces it from Keras) imported into the data dir, content-addressed as
 * `mdl-<16 hex>`, which the job names as its `model`. A peer whose job names a
 * model it does not hold fetches it from the swarm over `/peer/model/1.0.0`
 * (hash checked) before its trainer is built. Training the model is the
 * trainer's (node/trainer/layers-net.ts).
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const { id } = await importModel(dataDir, 'my-model/model.json')   // InvalidModelError naming the layer at fault
 * const source = await resolveJobModel({ dataDir, node, peers, logger }, job)  // stored or fetched; null for a preset
 */
import type { Logger } from 'pino'
import type { Job } from '../../protocols/job/index.ts'
import type { LayersModelSource } from '../trainer/index.ts'
import { hasModel, isModelId, loadModel } from './store.ts'
import { fetchModel } from './transfer.ts'
import type { ModelNode } from './transfer.ts'

export { CorruptModelError, InvalidModelError, ModelNotFoundError } from './errors.ts'
export { MODELS_DIR, MODEL_FILE, WEIGHTS_FILE, hasModel, importModel, isModelId, loadModel, modelIdOf, modelsRoot, readModelFile, readModelFiles, storeModelFiles } from './store.ts'
export type { ModelFiles } from './store.ts'
export { ModelService, fetchModel, fetchModelFrom } from './transfer.ts'
export type { ModelNode, ModelServiceComponents } from './transfer.ts'
export { MODEL_PROTOCOL, ModelUnavailableError } from '../../protocols/model/index.ts'

export interface JobModelComponents {
  dataDir: string
  /** Where a model this data dir lacks is fetched from. */
  node: ModelNode
  /** The peers to ask (the connected ones). */
  peers: () => string[]
  logger: Logger
}

/** The job's user model, from the data dir or fetched from the swarm; null when the job names a preset. */
export async function resolveJobModel (components: JobModelComponents, job: Pick<Job, 'model'>): Promise<LayersModelSource | null> {
  const { dataDir, logger } = components
  if (!isModelId(job.model)) return null
  if (!hasModel(dataDir, job.model)) {
    const peers = components.peers()
    logger.info({ model: job.model, peers: peers.length }, 'fetching the model from the swarm')
    const r = await fetchModel(components.node, peers, job.model, dataDir)
    logger.info({ model: job.model, from: r.peer, bytes: r.bytes, ms: Math.round(r.ms) }, 'model fetched')
  }
  return loadModel(dataDir, job.model)
}
