/**
 * What a request for text may ask (node/trainer/generate.ts samples it): the
 * bounds and their checks, without TensorFlow.js, so that the CLI checks a
 * request before sending it and the peer checks it again on arrival.
 */
/** Bounds of one request: the prompt's bytes and the bytes generated. */
export const MAX_PROMPT_BYTES = 4096
export const MAX_GENERATE_TOKENS = 4096
export const MAX_TEMPERATURE = 10

export interface GenerateOptions {
  prompt: string
  /** Bytes to generate (default 200). */
  tokens?: number
  /** 0: always the most likely byte; 1: the model's own distribution (default 0.8). */
  temperature?: number
  seed?: number
}

export interface Generated {
  prompt: string
  /** The generated continuation alone (without the prompt). */
  text: string
  tokens: number
  temperature: number
  seed: number
}

export class GenerateInputError extends Error {
  override name = 'GenerateInputError'
  readonly status = 400
}

/** Checks and fills in the options; throws GenerateInputError naming the bad one. */
export function generateOptions (o: GenerateOptions): Required<GenerateOptions> {
  const tokens = o.tokens ?? 200
  const temperature = o.temperature ?? 0.8
  const seed = o.seed ?? 0
  if (typeof o.prompt !== 'string') throw new GenerateInputError('prompt: expected text')
  if (Buffer.byteLength(o.prompt) > MAX_PROMPT_BYTES) throw new GenerateInputError(`prompt: longer than ${MAX_PROMPT_BYTES} bytes`)
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > MAX_GENERATE_TOKENS) throw new GenerateInputError(`tokens: expected an integer 1 … ${MAX_GENERATE_TOKENS}`)
  if (!Number.isFinite(temperature) || temperature < 0 || temperature > MAX_TEMPERATURE) throw new GenerateInputError(`temperature: expected a number 0 … ${MAX_TEMPERATURE}`)
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1) throw new GenerateInputError('seed: expected an integer 0 … 2^32 - 1')
  return { prompt: o.prompt, tokens, temperature, seed }
}

