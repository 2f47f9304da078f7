import { readFileSync } from 'node:fs'
import { InvalidArgumentError, Option } from 'commander'
import { InvalidJobError, parseJob, parseJobJson } from '../../protocols/job/index.ts'
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

export const dataDirOption = (): Option =>
  new Option('--data-dir <dir>', 'the peer\'s data dir (default: $PEER_HOME or ~/.peer)')

/** The job options of `peer start`; any of them given means the job is asked for explicitly. */
export function jobOptions (): Option[] {
  return [
    new Option('--job <file>', 'job file (JSON); flags below override its fields'),
    new Option('--dataset <name>', 'data set').choices(['mnist']),
    new Option('--model <preset>', 'model preset').choices(['mlp', 'cnn']),
    new Option('--hidden <widths>', 'hidden layer widths, e.g. 256,128').argParser(parseIntList),
    new Option('--batch-size <n>', 'batch size per peer').argParser(parsePositiveInt),
    new Option('--lr <rate>', 'learning rate').argParser(parsePositiveNumber),
    new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'momentum', 'adam']),
    new Option('--epochs <n>', 'passes over the training data').argParser(parsePositiveInt),
    new Option('--seed <n>', 'seed for initialisation and data order').argParser(parseNonNegativeInt),
    new Option('--shards <n>', 'shards the training data is cut into (peers claim them)').argParser(parsePositiveInt),
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
  batchSize?: number
  lr?: number
  optimizer?: string
  epochs?: number
  seed?: number
  shards?: number
  syncEvery?: number
  outerLr?: number
  outerMomentum?: number
}

/** The job from --job and the job flags, validated; undefined when none was given. */
export function jobFromFlags (flags: JobFlags): Job | undefined {
  let base: Record<string, unknown> = {}
  if (flags.job !== undefined) {
    let text: string
    try {
      text = readFileSync(flags.job, 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read job file ${flags.job}: ${(err as Error).message}`)
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
  if (flags.model !== undefined) overrides.model = flags.model as Job['model']
  if (flags.hidden !== undefined) overrides.hidden = flags.hidden
  if (flags.batchSize !== undefined) overrides.batchSize = flags.batchSize
  if (flags.lr !== undefined) overrides.learningRate = flags.lr
  if (flags.optimizer !== undefined) overrides.optimizer = flags.optimizer as Job['optimizer']
  if (flags.epochs !== undefined) overrides.epochs = flags.epochs
  if (flags.seed !== undefined) overrides.seed = flags.seed
  if (flags.shards !== undefined) overrides.shards = flags.shards
  if (flags.syncEvery !== undefined) overrides.syncEvery = flags.syncEvery
  if (flags.outerLr !== undefined) overrides.outerLearningRate = flags.outerLr
  if (flags.outerMomentum !== undefined) overrides.outerMomentum = flags.outerMomentum
  if (flags.job === undefined && Object.keys(overrides).length === 0) return undefined
  try {
    return parseJob({ ...base, ...overrides })
  } catch (err) {
    if (err instanceof InvalidJobError) throw new UsageError(err.message)
    throw err
  }
}
