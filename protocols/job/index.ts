/**
 * The job: what the swarm trains (data set, model, hyper-parameters). It is
 * defined once by the peer that creates the swarm, travels in the manifest,
 * and is identified by a hash of its canonical form.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const job = parseJob({ dataset: 'mnist', model: 'mlp', epochs: 3 })
 * jobId(job) // '3f1c…' (same bytes in, same id out, on every machine)
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { InvalidJobError } from './errors.ts'

export { InvalidJobError } from './errors.ts'

/** Largest job document accepted from a file or the network. */
export const MAX_JOB_BYTES = 64 * 1024

/** Built-in data sets, by name. */
export const BUILTIN_DATASETS = ['mnist', 'spam', 'spam-text'] as const
/** An imported data set is named by its content address: `ds-` and 16 hex digits (see node/data/imported). */
export const IMPORTED_DATASET_ID = /^ds-[0-9a-f]{16}$/

/** True for a name a job may carry as its data set. */
export function isDatasetName (name: string): boolean {
  return (BUILTIN_DATASETS as readonly string[]).includes(name) || IMPORTED_DATASET_ID.test(name)
}

/** Built-in model presets, by name. */
export const MODEL_PRESETS = ['mlp', 'cnn', 'gpt'] as const
/** A user's own TF.js Layers model is named by its content address: `mdl-` and 16 hex digits (see node/models). */
export const USER_MODEL_ID = /^mdl-[0-9a-f]{16}$/

/** True for a name a job may carry as its model. */
export function isModelName (name: string): boolean {
  return (MODEL_PRESETS as readonly string[]).includes(name) || USER_MODEL_ID.test(name)
}

/** The gpt model's size when the job says nothing (a small model: about 120 k parameters at context 64). */
export const GPT_DEFAULTS = { layers: 2, dim: 64, heads: 4 } as const

export const jobSchema = z.object({
  /** A built-in data set (`mnist`, `spam`, `spam-text`: text for `gpt`) or an imported one's id (`ds-…`, from `peer dataset import`). */
  dataset: z.string().refine(isDatasetName, { message: `expected ${BUILTIN_DATASETS.join(', ')} or an imported data set id (ds- and 16 hex digits)` }).default('mnist'),
  /**
   * `mlp`, `cnn`, `gpt` (a decoder-only transformer on byte tokens; needs a language-model data set, see `gpt`),
   * or a user model's id (`mdl-…`: `peer start --model path/model.json` stores it, node/models).
   */
  model: z.string().refine(isModelName, { message: `expected ${MODEL_PRESETS.join(', ')} or a model id (mdl- and 16 hex digits, from --model path/model.json)` }).default('mlp'),
  /** The gpt model's size (model `gpt` only; absent: the defaults, and the data set's context). */
  gpt: z.object({
    layers: z.number().int().min(1).max(64).default(GPT_DEFAULTS.layers),
    dim: z.number().int().min(8).max(8192).default(GPT_DEFAULTS.dim),
    heads: z.number().int().min(1).max(128).default(GPT_DEFAULTS.heads),
    /** Tokens the model sees at once; absent: the data set's (its rows hold context + 1 tokens). */
    context: z.number().int().min(1).max(8192).optional()
  }).strict().refine(g => g.dim % g.heads === 0, { message: 'dim must be a multiple of heads' }).optional(),
  /** Widths of the hidden dense layers (presets only). */
  hidden: z.array(z.number().int().min(1).max(8192)).max(8).default([256, 128]),
  batchSize: z.number().int().min(1).max(65536).default(64),
  learningRate: z.number().positive().max(10).default(0.001),
  /**
   * H = 1: the learning rate of a round over k batches' worth of samples (k peers training: the swarm's batch is
   * k times one peer's) is `learningRate` · k (`linear`, Goyal et al.) or · √k (`sqrt`, the rule for Adam of
   * Malladi et al.), never less than `learningRate`. Absent: the job's rate whatever the swarm's size (no
   * default written, so older job ids stay).
   */
  lrScaling: z.enum(['linear', 'sqrt']).optional(),
  /**
   * `bf16`: the all-reduce carries the gradients (H > 1: the deltas) as bfloat16, half the bytes, as DDP's
   * bf16_compress_hook does; the counts after them (samples, the data position, evaluation) stay float32, and
   * every member still applies the same sum. Absent: float32, exact (no default written, so older job ids stay).
   */
  compression: z.enum(['bf16']).optional(),
  optimizer: z.enum(['sgd', 'momentum', 'adam']).default('adam'),
  epochs: z.number().int().min(1).max(100000).default(8),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(42),
  /** Shards the training rows are cut into; peers claim them. Several per peer balance well. */
  shards: z.number().int().min(1).max(65536).default(32),
  /**
   * H: 1 all-reduces gradients every step (synchronous data parallelism); H > 1
   * trains H local steps, then all-reduces the parameter deltas and applies
   * them with the outer optimizer (DiLoCo).
   */
  syncEvery: z.number().int().min(1).max(100000).default(1),
  /** R: peers that keep a copy of each shard of an imported data set (absent: 2; no default written, so older job ids stay). */
  replicas: z.number().int().min(1).max(64).optional(),
  /** Outer optimizer (H > 1): SGD with Nesterov momentum on the averaged delta. */
  outerLearningRate: z.number().positive().max(10).default(0.7),
  outerMomentum: z.number().min(0).max(0.999).default(0.9)
}).strict().refine(j => j.gpt === undefined || j.model === 'gpt', { message: 'gpt options are for model gpt only', path: ['gpt'] })
  .refine(j => j.lrScaling === undefined || j.syncEvery === 1, { message: 'lrScaling is for H = 1 (syncEvery 1): with H > 1 each peer steps on its own batch', path: ['lrScaling'] })

export type Job = z.infer<typeof jobSchema>
export type JobInput = z.input<typeof jobSchema>

/** Validates a job (defaults filled in); throws InvalidJobError naming the bad field. */
export function parseJob (input: unknown): Job {
  const result = jobSchema.safeParse(input)
  if (!result.success) {
    const issue = result.error.issues[0]
    const field = issue.path.length > 0 ? issue.path.join('.') : '(job)'
    throw new InvalidJobError(`invalid job: ${field}: ${issue.message}`, field)
  }
  return result.data
}

/** Parses a job from JSON text, bounded in size. */
export function parseJobJson (text: string): Job {
  if (Buffer.byteLength(text) > MAX_JOB_BYTES) throw new InvalidJobError(`invalid job: larger than ${MAX_JOB_BYTES} bytes`, '(job)')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidJobError(`invalid job: not JSON (${(err as Error).message})`, '(job)')
  }
  return parseJob(value)
}

/** JSON with keys sorted at every level: the same job always gives the same bytes. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** The job's content address: sha256 of its canonical form, first 16 hex digits. */
export function jobId (job: Job): string {
  return createHash('sha256').update(canonicalJson(job)).digest('hex').slice(0, 16)
}
