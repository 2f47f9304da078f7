import type { Command } from 'commander'
import { Option } from 'commander'
import { ApiClient } from '../api/client.ts'
import { resolveDataDir } from '../peer/datadir.ts'
import { EXIT_OK } from './context.ts'
import type { CliContext } from './context.ts'
import { table } from './format.ts'
import { dataDirOption } from './options.ts'

export const evalCommand = {
  name: 'eval',
  configure (cmd: Command): Command {
    return cmd.description('evaluate the running peer\'s current model on the test split')
      .addOption(dataDirOption())
      .addOption(new Option('--json', 'print the evaluation as one JSON object').default(false))
  },
  async execute (ctx: CliContext, flags: { dataDir?: string, json: boolean }): Promise<number> {
    const client = await ApiClient.fromDataDir(resolveDataDir(flags.dataDir, ctx.env))
    const e = await client.evaluate()
    if (flags.json) {
      ctx.stdout.write(`${JSON.stringify(e)}\n`)
      return EXIT_OK
    }
    if (e.bitsPerByte !== undefined) {
      ctx.stdout.write(`test loss ${e.loss.toFixed(4)} nats per token, ${e.bitsPerByte.toFixed(4)} bits per byte, next-byte accuracy ${e.accuracy.toFixed(4)}  (${e.rows} test windows, step ${e.step}, weights ${e.weightsHash}, ${e.ms} ms)\n`)
      return EXIT_OK
    }
    const lines = [
      `test accuracy ${e.accuracy.toFixed(4)}  loss ${e.loss.toFixed(4)}  (${e.rows} test rows, step ${e.step}, weights ${e.weightsHash}, ${e.ms} ms)`,
      '',
      table(['CLASS', 'ACCURACY'], e.perClass.map((a, c) => [String(c), a === null ? '-' : a.toFixed(4)]), [true, true])
    ]
    ctx.stdout.write(`${lines.join('\n')}\n`)
    return EXIT_OK
  }
}
