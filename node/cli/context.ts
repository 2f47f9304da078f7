import type { Writable } from 'node:stream'

/** Where a command writes and what it reads from its surroundings; tests pass their own. */
export interface CliContext {
  stdout: Writable
  stderr: Writable
  env: NodeJS.ProcessEnv
  /** Signals to stop a long-running command (SIGINT/SIGTERM in the real CLI). */
  signals?: NodeJS.EventEmitter
}

/** Exit codes: 0 ok, 1 the command failed at run time, 2 the command line or job was invalid. */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** A command line mistake; main() prints it and exits with EXIT_USAGE. */
export class UsageError extends Error {
  override name = 'UsageError'
}
