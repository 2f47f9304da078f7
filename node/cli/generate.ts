import type { Command } from 'commander'
import { InvalidArgumentError, Option } from 'commander'
import { randomInt } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ApiClient } from '../api/client.ts'
import { MAX_GENERATE_TOKENS, MAX_TEMPERATURE, generateOptions } from '../trainer/generate-options.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import { EXIT_OK, UsageError } from './context.ts'
import type { CliContext } from './context.ts'
import { dataDirOption, parseNonNegativeInt, parsePositiveInt } from './options.ts'

interface GenerateFlags {
  dataDir?: string
  prompt: string
  tokens: number
  temperature: number
  seed?: number
  from?: string
  json: boolean
}

/** A saved gpt model is read whole: bound what a wrong path can make this process read. */
const MAX_MODEL_JSON_BYTES = 1024 * 1024
const MAX_WEIGHTS_BYTES = 2 * 1024 ** 3

function parseTemperature (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > MAX_TEMPERATURE) throw new InvalidArgumentError(`expected a number from 0 (the most likely byte) to ${MAX_TEMPERATURE}`)
  return n
}

/**
 * `peer generate --prompt TEXT`: text from a gpt model, the running peer's
 * current one (through its control API) or one `peer export` wrote
 * (`--from DIR`). Prints the prompt and its continuation.
 */
export const generateCommand = {
  name: 'generate',
  configure (cmd: Command): Command {
    return cmd.description('sample text from the running peer\'s gpt model (or an exported one, --from DIR)')
      .addOption(dataDirOption())
      .addOption(new Option('--prompt <text>', 'the text to continue').default(''))
      .addOption(new Option('--tokens <n>', `bytes to generate (at most ${MAX_GENERATE_TOKENS})`).argParser(parsePositiveInt).default(200))
      .addOption(new Option('--temperature <t>', 'sampling temperature: 0 takes the most likely byte, 1 the model\'s own distribution').argParser(parseTemperature).default(0.8))
      .addOption(new Option('--seed <n>', 'seed of the sampling: the same seed, weights and prompt give the same text (default: a random one)').argParser(parseNonNegativeInt))
      .addOption(new Option('--from <dir>', 'a gpt model written by `peer export` instead of the running peer\'s'))
      .addOption(new Option('--json', 'print the result as one JSON object').default(false))
  },
  async execute (ctx: CliContext, flags: GenerateFlags): Promise<number> {
    let params
    try {
      params = generateOptions({ prompt: flags.prompt, tokens: flags.tokens, temperature: flags.temperature, seed: flags.seed ?? randomInt(2 ** 32 - 1) })
    } catch (err) {
      if ((err as Error).name === 'GenerateInputError') throw new UsageError(`--${(err as Error).message}`)
      throw err
    }
    let result: { prompt: string, text: string, seed: number, step: number | null, weightsHash: string | null }
    if (flags.from !== undefined) {
      result = { ...await fromExport(resolve(flags.from), params), step: null, weightsHash: null }
    } else {
      const client = await ApiClient.fromDataDir(resolveDataDir(flags.dataDir, ctx.env))
      try {
        result = await client.generate(params)
      } catch (err) {
        // the peer refused the request itself (a prompt too long, a job that is not gpt): bad input, exit 2
        if ((err as Error).name === 'ApiRequestError' && (err as { status?: number }).status === 400) throw new UsageError((err as Error).message.replace(/^.*?HTTP 400: /s, ''))
        throw err
      }
    }
    if (flags.json) ctx.stdout.write(`${JSON.stringify(result)}\n`)
    else ctx.stdout.write(`${result.prompt}${result.text}\n`)
    return EXIT_OK
  }
}

async function fromExport (dir: string, params: { prompt: string, tokens: number, temperature: number, seed: number }): Promise<{ prompt: string, text: string, seed: number }> {
  const read = async (name: string, max: number): Promise<Buffer> => {
    let data: Buffer
    try {
      data = await readFile(join(dir, name))
    } catch (err) {
      throw new UsageError(`--from ${dir}: cannot read ${name}: ${(err as Error).message}`)
    }
    if (data.byteLength > max) throw new UsageError(`--from ${dir}: ${name} is larger than ${max} bytes`)
    return data
  }
  let modelJson: { weightsManifest?: Array<{ paths?: string[] }> }
  try {
    modelJson = JSON.parse((await read('model.json', MAX_MODEL_JSON_BYTES)).toString('utf8'))
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError(`--from ${dir}: model.json is not JSON (${(err as Error).message})`)
  }
  const weightsPath = modelJson.weightsManifest?.[0]?.paths?.[0] ?? ''
  if (!/^(\.\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(weightsPath)) throw new UsageError(`--from ${dir}: model.json names no weights file of its own directory`)
  const weights = await read(weightsPath.replace(/^\.\//, ''), MAX_WEIGHTS_BYTES)
  // TensorFlow.js loads only here: the API path needs none
  const [{ selectBackend }, { generate, loadGpt }] = await Promise.all([import('../trainer/backend.ts'), import('../trainer/generate.ts')])
  await selectBackend('auto')
  let net
  try {
    net = loadGpt(modelJson, weights)
  } catch (err) {
    if ((err as Error).name === 'InvalidGptModelError') throw new UsageError(`--from ${dir}: ${(err as Error).message}`)
    throw err
  }
  try {
    return generate(net, params)
  } catch (err) {
    if ((err as Error).name === 'GenerateInputError') throw new UsageError((err as Error).message)
    throw err
  } finally {
    net.dispose()
  }
}
