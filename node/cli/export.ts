import type { Command } from 'commander'
import { Option } from 'commander'
import { existsSync } from 'node:fs'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ApiClient } from '../api/client.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import { EXIT_OK, UsageError } from './context.ts'
import type { CliContext } from './context.ts'
import { dataDirOption } from './options.ts'

interface ExportFlags {
  dataDir?: string
  force: boolean
  json: boolean
  /** The operands (DIR), set from the command line before the action runs. */
  operands?: string[]
}

/** What the exported model outputs, as the peer recorded it in model.json's metadata. */
function outputOf (modelJson: Record<string, unknown>): string {
  const peer = (modelJson.userDefinedMetadata as { peer?: { output?: unknown } } | undefined)?.peer
  return typeof peer?.output === 'string' && peer.output.startsWith('probabilities') ? 'probabilities (its own softmax)' : 'logits'
}

/** Only these names are ever written: a weights file name from the peer cannot point elsewhere. */
const SAFE_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export const exportCommand = {
  name: 'export',
  configure (cmd: Command): Command {
    return cmd.description('write the running peer\'s current model to DIR in TensorFlow.js format (model.json + weights.bin, for tf.loadLayersModel)')
      .usage('[options] DIR')
      .addOption(dataDirOption())
      .addOption(new Option('--force', 'replace a model already in DIR').default(false))
      .addOption(new Option('--json', 'print what was written as one JSON object').default(false))
      .allowExcessArguments(true)
      // main() hands execute() the options only: pass the operand along with them
      .hook('preAction', (command) => { command.setOptionValue('operands', [...command.args]) })
  },
  async execute (ctx: CliContext, flags: ExportFlags): Promise<number> {
    const operands = flags.operands ?? []
    if (operands.length !== 1) throw new UsageError(`expected one DIR to write the model to, got ${operands.length === 0 ? 'none' : operands.join(' ')}`)
    const dir = resolve(operands[0])
    const client = await ApiClient.fromDataDir(resolveDataDir(flags.dataDir, ctx.env))
    if (existsSync(join(dir, 'model.json')) && !flags.force) throw new UsageError(`${dir} already holds a model.json; use --force to replace it`)
    const model = await client.exportModel()
    if (!SAFE_FILE.test(model.weightsFile) || model.weightsFile === 'model.json') throw new Error(`the peer named an unexpected weights file ${JSON.stringify(model.weightsFile)}`)
    const weights = Buffer.from(model.weightsBase64, 'base64')
    await mkdir(dir, { recursive: true })
    // weights first, model.json last: a reader that finds model.json finds its weights
    const put = async (name: string, data: string | Uint8Array): Promise<void> => {
      const tmp = join(dir, `.${name}.${process.pid}.tmp`)
      await writeFile(tmp, data)
      await rename(tmp, join(dir, name))
    }
    await put(model.weightsFile, weights)
    await put('model.json', `${JSON.stringify(model.modelJson, null, 2)}\n`)
    const written = { dir, files: ['model.json', model.weightsFile], weightsBytes: weights.byteLength, step: model.step, round: model.round, weightsHash: model.weightsHash, accuracy: model.accuracy, jobId: model.jobId }
    if (flags.json) {
      ctx.stdout.write(`${JSON.stringify(written)}\n`)
    } else {
      ctx.stdout.write(`exported the model at step ${model.step} (weights ${model.weightsHash}${model.accuracy !== null ? `, last test accuracy ${model.accuracy.toFixed(4)}` : ''}) to ${dir}\n`)
      if (model.modelJson.format === 'peer-gpt/1') ctx.stdout.write(`  model.json, ${model.weightsFile} (${weights.byteLength} bytes): a gpt model in peer's own format; sample from it with peer generate --from ${dir}\n`)
      else ctx.stdout.write(`  model.json, ${model.weightsFile} (${weights.byteLength} bytes); load it with tf.loadLayersModel('file://${join(dir, 'model.json')}') (tfjs-node) or an IO handler; its output is ${outputOf(model.modelJson)}\n`)
    }
    return EXIT_OK
  }
}
