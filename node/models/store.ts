/**
 * The data dir's model store: a user's TF.js Layers model, imported from its
 * model.json (and the weight files its manifest names), checked, and kept
 * content-addressed as `<dataDir>/models/mdl-<16 hex>/` with a model.json in
 * one canonical form and one weights.bin. Written to a temp dir and renamed,
 * so nothing half-written is ever read; re-hashed on every read.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import type * as tfTypes from '@tensorflow/tfjs'
import { USER_MODEL_ID, canonicalJson } from '../../protocols/job/index.ts'
import { MAX_MODEL_JSON_BYTES, MAX_WEIGHTS_BYTES } from '../../protocols/model/index.ts'
import { InvalidModelError, checkLayersModel } from '../trainer/index.ts'
import type { LayersModelSource, TopologyInfo } from '../trainer/index.ts'
import { CorruptModelError, ModelNotFoundError } from './errors.ts'

/** Folder of the data dir that holds the models. */
export const MODELS_DIR = 'models'
export const MODEL_FILE = 'model.json'
export const WEIGHTS_FILE = 'weights.bin'
/** What the id hashes first: a new layout gets a new tag, so old ids never name new bytes. */
const ID_TAG = 'peer-model/1\n'

export function modelsRoot (dataDir: string): string {
  return join(dataDir, MODELS_DIR)
}

export function isModelId (name: string): boolean {
  return USER_MODEL_ID.test(name)
}

/** The content address of a stored model: sha256 over a tag, the model.json's length, its bytes, the weights. */
export function modelIdOf (modelJson: Uint8Array, weights: Uint8Array): string {
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(modelJson.byteLength))
  const hash = createHash('sha256').update(ID_TAG).update(length).update(modelJson).update(weights).digest('hex')
  return `mdl-${hash.slice(0, 16)}`
}

/** A model as the store keeps it: the canonical model.json bytes and the weights bytes (empty: none). */
export interface ModelFiles {
  modelJson: Uint8Array
  weights: Uint8Array
}

interface CanonicalModel {
  format: 'layers-model'
  modelTopology: Record<string, unknown>
  weightsManifest?: Array<{ paths: string[], weights: tfTypes.io.WeightsManifestEntry[] }>
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Reads a file of at most `max` bytes; InvalidModelError saying why not. */
function readBounded (path: string, max: number, what: string): Buffer {
  let size: number
  try {
    const st = statSync(path)
    if (!st.isFile()) throw new InvalidModelError(`${what} ${path} is not a file`)
    size = st.size
  } catch (err) {
    if (err instanceof InvalidModelError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw new InvalidModelError(`cannot read ${what} ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  if (size > max) throw new InvalidModelError(`${what} ${path} is ${size} bytes, over the limit of ${max}`)
  return readFileSync(path)
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 }

/** Bytes a weight spec takes in the weights file. */
function specBytes (spec: tfTypes.io.WeightsManifestEntry): number {
  const n = spec.shape.reduce((a, b) => a * b, 1)
  const dtype = spec.quantization?.dtype ?? spec.dtype
  const per = DTYPE_BYTES[dtype]
  if (per === undefined) throw new InvalidModelError(`weight "${spec.name}" has dtype ${dtype}, which peer cannot read`)
  return n * per
}

function validSpec (s: unknown): s is tfTypes.io.WeightsManifestEntry {
  return isObject(s) && typeof s.name === 'string' && Array.isArray(s.shape) && s.shape.every(d => Number.isInteger(d) && d >= 0) && typeof s.dtype === 'string'
}

/**
 * Reads a user's model.json and its weight files (paths relative to it) into
 * the canonical form: every weight as float32, in one buffer. Throws
 * InvalidModelError for a missing or unreadable file, bad JSON, a graph model,
 * an unsupported layer (named), or weights that do not fit.
 */
export async function readModelFile (path: string): Promise<ModelFiles & { info: TopologyInfo & { parameters: number } }> {
  const tf = await import('@tensorflow/tfjs')
  const text = readBounded(path, MAX_MODEL_JSON_BYTES, 'model file').toString('utf8')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidModelError(`model file ${path} is not JSON: ${(err as Error).message}`)
  }
  if (!isObject(value)) throw new InvalidModelError(`model file ${path} is not a JSON object`)
  if (value.format !== undefined && value.format !== 'layers-model') {
    throw new InvalidModelError(`model file ${path} is a ${String(value.format)}, not a layers-model: peer trains TF.js Layers models (model.save(), or tensorflowjs_converter --output_format tfjs_layers_model)`)
  }
  const topology = isObject(value.modelTopology) ? value.modelTopology : typeof value.class_name === 'string' ? value : null
  if (topology === null) throw new InvalidModelError(`model file ${path} has no modelTopology (expected the model.json that model.save() or tensorflowjs_converter writes)`)

  let weights: { specs: tfTypes.io.WeightsManifestEntry[], data: ArrayBuffer } | null = null
  const manifest = value.weightsManifest
  if (manifest !== undefined && manifest !== null) {
    if (!Array.isArray(manifest) || !manifest.every(g => isObject(g) && Array.isArray(g.paths) && g.paths.every(p => typeof p === 'string') && Array.isArray(g.weights) && g.weights.every(validSpec))) {
      throw new InvalidModelError(`model file ${path}: weightsManifest is not a list of { paths, weights } groups`)
    }
    const groups = manifest as Array<{ paths: string[], weights: tfTypes.io.WeightsManifestEntry[] }>
    const specs = groups.flatMap(g => g.weights)
    if (specs.length > 0) {
      const expected = specs.reduce((n, s) => n + specBytes(s), 0)
      if (expected > MAX_WEIGHTS_BYTES) throw new InvalidModelError(`model file ${path}: its weights take ${expected} bytes, over the limit of ${MAX_WEIGHTS_BYTES}`)
      const parts: Buffer[] = []
      let total = 0
      for (const p of groups.flatMap(g => g.paths)) {
        if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p) || isAbsolute(p)) throw new InvalidModelError(`model file ${path}: weights path ${JSON.stringify(p)} must be relative to the model.json`)
        const file = resolve(dirname(path), p)
        const part = readBounded(file, MAX_WEIGHTS_BYTES - total, 'weights file')
        total += part.byteLength
        parts.push(part)
      }
      if (total !== expected) throw new InvalidModelError(`model file ${path}: the weights files hold ${total} bytes, the manifest describes ${expected}`)
      const joined = Buffer.concat(parts)
      const named = tf.io.decodeWeights(joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength), specs)
      try {
        const floats: tfTypes.NamedTensorMap = {}
        for (const [name, t] of Object.entries(named)) floats[name] = t.dtype === 'float32' ? t : tf.cast(t, 'float32')
        const encoded = await tf.io.encodeWeights(floats)
        weights = { specs: encoded.specs, data: encoded.data }
        tf.dispose(Object.values(floats))
      } finally {
        tf.dispose(Object.values(named))
      }
    }
  }
  const canonical: CanonicalModel = { format: 'layers-model', modelTopology: topology }
  if (weights !== null) canonical.weightsManifest = [{ paths: [WEIGHTS_FILE], weights: weights.specs }]
  const modelJson = Buffer.from(canonicalJson(canonical), 'utf8')
  const weightBytes = weights !== null ? new Uint8Array(weights.data) : new Uint8Array(0)
  const where = `model file ${path}`
  try {
    const info = await checkLayersModel(sourceOf(where, modelJson, weightBytes, where))
    return { modelJson, weights: weightBytes, info }
  } catch (err) {
    if (err instanceof InvalidModelError && !err.message.startsWith(where)) throw new InvalidModelError(`${where}: ${err.message}`, err.layer)
    throw err
  }
}

/** The trainer's view of stored bytes; CorruptModelError (or InvalidModelError) when they do not parse. */
function sourceOf (id: string, modelJson: Uint8Array, weights: Uint8Array, where: string): LayersModelSource {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(modelJson).toString('utf8'))
  } catch (err) {
    throw new CorruptModelError(`${where}: model.json is not JSON: ${(err as Error).message}`)
  }
  if (!isObject(value) || !isObject(value.modelTopology)) throw new CorruptModelError(`${where}: model.json has no modelTopology`)
  const manifest = value.weightsManifest
  const specs = Array.isArray(manifest) ? manifest.flatMap(g => (isObject(g) && Array.isArray(g.weights) ? g.weights : [])) : []
  if (!specs.every(validSpec)) throw new CorruptModelError(`${where}: model.json's weight specs are malformed`)
  const expected = specs.reduce((n, s) => n + specBytes(s), 0)
  if (expected !== weights.byteLength) throw new CorruptModelError(`${where}: weights.bin holds ${weights.byteLength} bytes, model.json describes ${expected}`)
  return {
    id,
    modelTopology: value.modelTopology,
    weights: specs.length > 0 ? { specs, data: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer } : null
  }
}

/** Puts a model's files into the store (temp dir, then rename); keeps one already there. Returns its id. */
export function storeModelFiles (dataDir: string, files: ModelFiles): string {
  const id = modelIdOf(files.modelJson, files.weights)
  const root = modelsRoot(dataDir)
  const dir = join(root, id)
  if (existsSync(join(dir, MODEL_FILE))) return id
  mkdirSync(root, { recursive: true })
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp)
  try {
    if (files.weights.byteLength > 0) writeFileSync(join(tmp, WEIGHTS_FILE), files.weights)
    writeFileSync(join(tmp, MODEL_FILE), files.modelJson)
    rmSync(dir, { recursive: true, force: true })
    renameSync(tmp, dir)
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    throw err
  }
  return id
}

/** Imports a user's model.json into the data dir's store; returns its id and what it holds. */
export async function importModel (dataDir: string, path: string): Promise<{ id: string, info: TopologyInfo & { parameters: number }, bytes: number }> {
  const files = await readModelFile(path)
  const id = storeModelFiles(dataDir, files)
  return { id, info: files.info, bytes: files.modelJson.byteLength + files.weights.byteLength }
}

export function hasModel (dataDir: string, id: string): boolean {
  return isModelId(id) && existsSync(join(modelsRoot(dataDir), id, MODEL_FILE))
}

/** The stored files of a model, checked against its id; ModelNotFoundError, CorruptModelError. */
export function readModelFiles (dataDir: string, id: string): ModelFiles {
  if (!isModelId(id)) throw new ModelNotFoundError(`not a model id: ${id}`)
  const dir = join(modelsRoot(dataDir), id)
  if (!existsSync(join(dir, MODEL_FILE))) throw new ModelNotFoundError(`model ${id} is not in ${modelsRoot(dataDir)}`)
  const modelJson = readFileSync(join(dir, MODEL_FILE))
  const weights = existsSync(join(dir, WEIGHTS_FILE)) ? readFileSync(join(dir, WEIGHTS_FILE)) : Buffer.alloc(0)
  const actual = modelIdOf(modelJson, weights)
  if (actual !== id) throw new CorruptModelError(`model ${id} in ${dir} hashes to ${actual}: its files are damaged`)
  return { modelJson, weights }
}

/** A stored model, ready for createLayersNet. */
export function loadModel (dataDir: string, id: string): LayersModelSource {
  const files = readModelFiles(dataDir, id)
  return sourceOf(id, files.modelJson, files.weights, join(modelsRoot(dataDir), id))
}
