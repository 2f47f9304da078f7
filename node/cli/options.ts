import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { InvalidArgumentError, Option } from 'commander'
import { BUILTIN_DATASETS, InvalidJobError, MODEL_PRESETS, isDatasetName, isModelName, parseJob, parseJobJson } from '../../protocols/job/index.ts'
import type { Job, JobInput } from '../../protocols/job/index.ts'
import { UsageError } from './context.ts'

export function parsePositiveInt (value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive integer')
  return Number(value)
}

export function parseNonNegativeInt (value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a non-negative integer')
  return Number(value)
}

export function parsePositiveNumber (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number')
  return n
}

export function parseFraction (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError('expected a number in [0, 1)')
  return n
}

export function parseIntList (value: string): number[] {
  const parts = value.split(',').map(s => s.trim())
  if (parts.some(p => !/^\d+$/.test(p) || Number(p) < 1)) throw new InvalidArgumentError('expected comma-separated positive integers, e.g. 256,128')
  return parts.map(Number)
}

/** `mnist`, `spam`, or an imported data set's id (`ds-` and 16 hex digits). */
export function parseDatasetName (value: string): string {
  if (!isDatasetName(value)) throw new InvalidArgumentError(`expected ${BUILTIN_DATASETS.join(', ')} or an imported data set id (ds- and 16 hex digits, see \`peer dataset ls\`)`)
  return value
}

export const dataDirOption = (): Option =>
  new Option('--data-dir <dir>', 'the peer\'s data dir (default: $PEER_HOME or ~/.peer)')

/** The job options of `peer start`; any of them given means the job is asked for explicitly. */
export function jobOptions (): Option[] {
  return [
    new Option('--job <file>', 'job file (JSON); flags below override its fields'),
    new Option('--dataset <name>', `data set: ${BUILTIN_DATASETS.join(', ')}, or an imported data set's id (peer dataset ls)`).argParser(parseDatasetName),
    new Option('--model <preset|path>', `model: a preset (${MODEL_PRESETS.join(', ')}; gpt: a byte-level transformer, for a language-model data set), a TF.js Layers model's model.json (stored in the data dir), or a stored model's id (mdl-…)`),
    new Option('--layers <n>', 'gpt: transformer blocks (default 2)').argParser(parsePositiveInt),
    new Option('--dim <n>', 'gpt: embedding width, a multiple of --heads (default 64)').argParser(parsePositiveInt),
    new Option('--heads <n>', 'gpt: attention heads (default 4)').argParser(parsePositiveInt),
    new Option('--context <n>', 'gpt: tokens the model sees at once (default: the data set\'s)').argParser(parsePositiveInt),
    new Option('--hidden <widths>', 'hidden layer widths, e.g. 256,128').argParser(parseIntList),
    new Option('--batch-size <n>', 'batch size per peer').argParser(parsePositiveInt),
    new Option('--lr <rate>', 'learning rate').argParser(parsePositiveNumber),
    new Option('--lr-scaling <rule>', 'H = 1: scale the learning rate with the swarm\'s batch (k peers: k times one peer\'s): linear (· k) or sqrt (· √k)').choices(['linear', 'sqrt']),
    new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'momentum', 'adam']),
    new Option('--compression <kind>', 'the all-reduce carries gradients (H > 1: deltas) as bf16: half the bytes, 8 bits of mantissa').choices(['bf16']),
    new Option('--epochs <n>', 'passes over the training data').argParser(parsePositiveInt),
    new Option('--seed <n>', 'seed for initialisation and data order').argParser(parseNonNegativeInt),
    new Option('--shards <n>', 'shards the training data is cut into (peers claim them)').argParser(parsePositiveInt),
    new Option('--replicas <R>', 'peers that keep a copy of each shard of an imported data set (default 2)').argParser(parsePositiveInt),
    new Option('--sync-every <H>', '1: all-reduce gradients every step; H > 1: H local steps, then average the deltas (DiLoCo)').argParser(parsePositiveInt),
    new Option('--outer-lr <rate>', 'outer learning rate (H > 1)').argParser(parsePositiveNumber),
    new Option('--outer-momentum <m>', 'outer Nesterov momentum (H > 1)').argParser(parseFraction)
  ]
}

export interface JobFlags {
  job?: string
  dataset?: string
  model?: string
  hidden?: number[]
  layers?: number
  dim?: number
  heads?: number
  context?: number
  batchSize?: number
  lr?: number
  lrScaling?: string
  compression?: string
  optimizer?: string
  epochs?: number
  seed?: number
  shards?: number
  syncEvery?: number
  replicas?: number
  outerLr?: number
  outerMomentum?: number
}

/**
 * A job's `model` as written: a preset or a model id as it is, anything else the path of a TF.js Layers
 * model.json, imported into the data dir's model store (UsageError naming the file and the layer at fault).
 */
async function modelName (value: string, base: string, dataDir: string): Promise<string> {
  if (isModelName(value)) return value
  const { importModel } = await import('../models/index.ts')
  try {
    return (await importModel(dataDir, resolve(base, value))).id
  } catch (err) {
    if ((err as Error).name === 'InvalidModelError') throw new UsageError(`--model ${value}: ${(err as Error).message}${/no such file/.test((err as Error).message) ? ` (presets: ${MODEL_PRESETS.join(', ')})` : ''}`)
    throw err
  }
}

/** The job from --job and the job flags, validated; undefined when none was given. A model path is imported into `dataDir`. */
export async function jobFromFlags (flags: JobFlags, dataDir: string): Promise<Job | undefined> {
  let base: Record<string, unknown> = {}
  if (flags.job !== undefined) {
    let text: string
    try {
      text = readFileSync(flags.job, 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read job file ${flags.job}: ${(err as Error).message}`)
    }
    try {
      // a model path in the file is relative to the file
      const raw = JSON.parse(text) as unknown
      if (raw !== null && typeof raw === 'object' && typeof (raw as { model?: unknown }).model === 'string' && flags.model === undefined) {
        const model = (raw as { model: string }).model
        if (!isModelName(model)) text = JSON.stringify({ ...raw, model: await modelName(model, dirname(resolve(flags.job)), dataDir) })
      }
    } catch (err) {
      if (err instanceof UsageError) throw new UsageError(`${flags.job}: ${err.message.replace(/^--model /, 'model ')}`)
      // not JSON: parseJobJson says so
    }
    try {
      base = { ...parseJobJson(text) }
    } catch (err) {
      if (err instanceof InvalidJobError) throw new UsageError(`${flags.job}: ${err.message}`)
      throw err
    }
  }
  const overrides: Partial<JobInput> = {}
  if (flags.dataset !== undefined) overrides.dataset = flags.dataset as Job['dataset']
  if (flags.model !== undefined) overrides.model = await modelName(flags.model, process.cwd(), dataDir)
  if (flags.hidden !== undefined) overrides.hidden = flags.hidden
  const gpt = { layers: flags.layers, dim: flags.dim, heads: flags.heads, context: flags.context }
  if (Object.values(gpt).some(v => v !== undefined)) {
    const given = Object.fromEntries(Object.entries(gpt).filter(([, v]) => v !== undefined))
    overrides.gpt = { ...(base.gpt as JobInput['gpt']), ...given }
  }
  if (flags.batchSize !== undefined) overrides.batchSize = flags.batchSize
  if (flags.lr !== undefined) overrides.learningRate = flags.lr
  if (flags.lrScaling !== undefined) overrides.lrScaling = flags.lrScaling as Job['lrScaling']
  if (flags.compression !== undefined) overrides.compression = flags.compression as Job['compression']
  if (flags.optimizer !== undefined) overrides.optimizer = flags.optimizer as Job['optimizer']
  if (flags.epochs !== undefined) overrides.epochs = flags.epochs
  if (flags.seed !== undefined) overrides.seed = flags.seed
  if (flags.shards !== undefined) overrides.shards = flags.shards
  if (flags.syncEvery !== undefined) overrides.syncEvery = flags.syncEvery
  if (flags.replicas !== undefined) overrides.replicas = flags.replicas
  if (flags.outerLr !== undefined) overrides.outerLearningRate = flags.outerLr
  if (flags.outerMomentum !== undefined) overrides.outerMomentum = flags.outerMomentum
  if (flags.job === undefined && Object.keys(overrides).length === 0) return undefined
  let job: Job
  try {
    job = parseJob({ ...base, ...overrides })
  } catch (err) {
    if (err instanceof InvalidJobError) throw new UsageError(err.message)
    throw err
  }
  if (job.model === 'gpt') await checkGptData(job, dataDir)
  return job
}

/**
 * A gpt job names a language-model data set whose windows fit its context: the built-in spam-text, or one
 * imported with --lm (checked where its description is in this data dir; a joiner's is checked by its trainer).
 */
async function checkGptData (job: Job, dataDir: string): Promise<void> {
  const wanted = job.gpt?.context
  const lmData = 'a language-model data set: spam-text, or one imported with `peer dataset import FILE --lm`'
  let context: number | undefined
  if (job.dataset === 'spam-text') {
    context = (await import('../data/lm.ts')).SPAM_TEXT_CONTEXT
  } else if ((BUILTIN_DATASETS as readonly string[]).includes(job.dataset)) {
    throw new UsageError(`--model gpt needs ${lmData} (${job.dataset} is not one)`)
  } else {
    const { datasetsRoot, readDescription } = await import('../data/imported/index.ts')
    let description
    try {
      description = readDescription(join(datasetsRoot(dataDir), job.dataset), job.dataset)
    } catch {
      return // not here (yet): the trainer checks the rows once the data set has arrived
    }
    if (description.lm === undefined) throw new UsageError(`--model gpt needs ${lmData} (${job.dataset} is a table with ${description.classes.length} classes)`)
    context = description.lm.context
  }
  if (wanted !== undefined && wanted !== context) throw new UsageError(`--context ${wanted}: the data set ${job.dataset} holds windows of context ${context} (leave --context out${job.dataset === 'spam-text' ? '' : `, or import the text again with --context ${wanted}`})`)
}

/** `peer start`'s security options (`--join` itself is declared with the networking options). */
export function securityOptions (): Option[] {
  return [
    new Option('--open', 'start (or join by address) a swarm without a swarm key: anyone who can reach it can join').default(false),
    new Option('--allow <file>', 'only these peer ids may connect (one per line, # comments); this peer\'s own id needn\'t be listed')
  ]
}

export interface SecurityFlags {
  join: string[]
  open: boolean
  allow?: string
}

export interface SwarmFlags {
  /** Multiaddrs to join through: the tokens' and the plain ones. */
  join: string[]
  /** The swarm key the join tokens carry, or null (none given). */
  key: Uint8Array | null
  open: boolean
  allow: Set<string> | null
}

/**
 * Reads `--join` (join tokens and multiaddrs), `--open` and `--allow`; throws UsageError on a bad token or
 * address, tokens of different swarms, a token with --open, a fresh data dir joining by address without
 * --open, or a --join peer that the allow-list leaves out.
 */
export async function swarmFromFlags (flags: SecurityFlags, dataDir: string): Promise<SwarmFlags> {
  // loaded here, so that `peer status` does not load multiaddr and peer-id parsing
  const [{ multiaddr }, security] = await Promise.all([import('@multiformats/multiaddr'), import('../security/index.ts')])
  const join: string[] = []
  let key: Uint8Array | null = null
  let tokens = 0
  for (const value of flags.join) {
    if (security.isJoinToken(value)) {
      let token
      try {
        token = security.decodeJoinToken(value)
      } catch (err) {
        throw new UsageError(`--join: ${(err as Error).message}`)
      }
      if (key !== null && !security.swarmKeysEqual(key, token.key)) throw new UsageError('--join: the join tokens belong to different swarms (their keys differ)')
      key = token.key
      tokens += 1
      join.push(...token.addresses)
      continue
    }
    let ma
    try {
      ma = multiaddr(value)
    } catch (err) {
      throw new UsageError(`--join ${value.slice(0, 100)}: neither a join token (peer1.…) nor a multiaddr (${(err as Error).message})`)
    }
    if (ma.getPeerId() === null) throw new UsageError(`--join ${value}: the address must end with /p2p/<peer id> (peer start prints it)`)
    join.push(value)
  }
  if (flags.open && tokens > 0) throw new UsageError('--open and a join token: a token joins a private swarm; leave out --open')
  if (!flags.open && tokens === 0 && join.length > 0 && await security.swarmMode(dataDir) === 'fresh') {
    throw new UsageError('--join by address joins an open swarm only: join a private swarm with the join token its first peer printed (peer start --join peer1.…), or add --open to join an open one')
  }
  let allow: Set<string> | null = null
  if (flags.allow !== undefined) {
    try {
      allow = await security.readAllowList(flags.allow)
    } catch (err) {
      throw new UsageError(`--allow: ${(err as Error).message}`)
    }
    for (const addr of join) {
      const id = multiaddr(addr).getPeerId()
      if (id !== null && !allow.has(id)) throw new UsageError(`--join: peer ${id} is not on the allow-list ${flags.allow}: this peer would refuse it`)
    }
  }
  return { join: [...new Set(join)], key, open: flags.open, allow }
}
