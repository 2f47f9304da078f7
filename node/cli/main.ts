/**
 * The `peer` command line: thin commands that parse, call, and print.
 * `main()` is importable so tests can run a command and capture what a user sees.
 *
 * Where this folder sits among the others: docs/architecture.md.
 */
import { Command, CommanderError } from 'commander'
import { EXIT_FAILURE, EXIT_USAGE, UsageError } from './context.ts'
import type { CliContext } from './context.ts'
import { startCommand } from './start.ts'
import { statusCommand } from './status.ts'
import { stopCommand } from './stop.ts'
import { datasetCommand } from './dataset.ts'
import { exportCommand } from './export.ts'
import { evalCommand } from './eval.ts'
import { generateCommand } from './generate.ts'
import { joinTokenCommand } from './join-token.ts'

export type { CliContext } from './context.ts'

interface CliCommand {
  name: string
  configure: (cmd: Command) => Command
  execute: (ctx: CliContext, flags: any) => Promise<number>
}

const COMMANDS: CliCommand[] = [startCommand, statusCommand, stopCommand]
COMMANDS.push(datasetCommand)
COMMANDS.push(exportCommand)
COMMANDS.push(evalCommand)
COMMANDS.push(generateCommand)
COMMANDS.push(joinTokenCommand)

/** Errors whose message is the whole story for the user (no stack trace). */
const USER_ERRORS = new Set([
  'UsageError', 'InvalidJobError', 'NoPeerRunningError', 'ApiRequestError', 'DataDirInUseError',
  'CorruptDataDirError', 'JobConflictError', 'JoinFailedError', 'BackendUnavailableError', 'UnknownDatasetError',
  'NoJoinTokenError', 'InvalidSwarmKeyError', 'InvalidJoinTokenError'
])

export async function main (argv: string[], ctx: CliContext): Promise<number> {
  let code = 0
  const program = new Command('peer')
    .description('peer-to-peer data-parallel training')
    .exitOverride()
    .configureOutput({
      writeOut: s => { ctx.stdout.write(s) },
      writeErr: s => { ctx.stderr.write(s) }
    })
    .showHelpAfterError('(run `peer --help` for usage)')
  let running: string | null = null
  for (const c of COMMANDS) {
    const cmd = c.configure(program.command(c.name)).exitOverride()
    cmd.action(async (flags) => {
      running = c.name
      code = await c.execute(ctx, flags)
    })
  }
  try {
    await program.parseAsync(argv, { from: 'user' })
    if (running === null && argv.length === 0) {
      program.outputHelp()
      return EXIT_USAGE
    }
    return code
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0
      return EXIT_USAGE
    }
    const e = err as Error
    const prefix = `peer${running !== null ? ` ${running as string}` : ''}`
    if (e.name === 'UsageError' || e.name === 'InvalidJobError') {
      ctx.stderr.write(`${prefix}: ${e.message}\n`)
      return EXIT_USAGE
    }
    if (USER_ERRORS.has(e.name)) {
      ctx.stderr.write(`${prefix}: ${e.message}\n`)
      return EXIT_FAILURE
    }
    ctx.stderr.write(`${prefix}: ${e.stack ?? e.message}\n`)
    return EXIT_FAILURE
  }
}

export { UsageError }
