/**
 * Runs real `peer` processes for tests: `bin/peer.js` under the Node 24 that
 * runs the tests, on temp data dirs, with helpers that wait on conditions
 * with a deadline (never fixed sleeps).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = join(import.meta.dirname, '..', '..')
export const PEER_BIN = join(ROOT, 'bin', 'peer.js')

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface SpawnPeerOptions {
  env?: NodeJS.ProcessEnv
  /** A command that runs the peer, e.g. `['ip', 'netns', 'exec', ns]` (test/helpers/netlab.ts); it must exec, not fork. */
  prefix?: string[]
}

/** Runs `peer <args>` to completion (with a deadline) and returns its output. */
export async function runPeer (args: string[], opts: SpawnPeerOptions & { timeoutMs?: number } = {}): Promise<RunResult> {
  const child = spawnPeer(args, opts)
  return await child.exited(opts.timeoutMs ?? 60_000)
}

export interface PeerChild {
  child: ChildProcess
  readonly stdout: string
  readonly stderr: string
  exited: (timeoutMs?: number) => Promise<RunResult>
}

/** Starts `peer <args>` in the background. */
export function spawnPeer (args: string[], opts: SpawnPeerOptions = {}): PeerChild {
  const command = [...(opts.prefix ?? []), process.execPath, PEER_BIN, ...args]
  const child = spawn(command[0], command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
  const done = new Promise<RunResult>(resolve => {
    child.on('exit', (code, signal) => {
      // let the pipes drain
      setImmediate(() => { resolve({ code, signal, stdout, stderr }) })
    })
  })
  return {
    child,
    get stdout () { return stdout },
    get stderr () { return stderr },
    exited: async (timeoutMs = 60_000) => {
      const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
      try {
        return await done
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

/** Polls `probe` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T> (what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (err) {
      lastError = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? ` (last error: ${(lastError as Error).message})` : ''}`)
}

export async function tempDir (prefix = 'peer-test-'): Promise<{ path: string, remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: async () => { await rm(path, { recursive: true, force: true }) } }
}
