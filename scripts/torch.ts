/**
 * The PyTorch the benchmarks compare against: Debian's python3-torch (torch 1.13 on bookworm), installed with
 * apt-get when missing. Only benchmarks use it; `npm test` never needs it.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

/** Debian's python3, where python3-torch installs, not a pyenv shim that may shadow it. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

/**
 * torch's version and the BLAS it calls (Debian's torch uses the system libblas: reference BLAS unless, say,
 * OpenBLAS is installed); null without torch (or torch.distributed).
 */
export function torchVersion (): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import os, torch, torch.distributed; print(torch.__version__, "with", os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3"))'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

/**
 * torch's version: there already, or after `apt-get install python3-torch` (and an `apt-get update` if that
 * fails); null, with the reason given to `log`, when neither works.
 */
export function ensureTorch (log: (line: string) => void): string | null {
  const version = torchVersion()
  if (version !== null) return version
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0
  if (!apt) {
    log('PyTorch is missing and there is no apt-get: its rows stay empty')
    return null
  }
  log('PyTorch is missing: apt-get install -y python3-torch (once)…')
  const install = (): void => { execFileSync('apt-get', ['install', '-y', '-q', 'python3-torch'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }) }
  try {
    install()
  } catch {
    try {
      execFileSync('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'] })
      install()
    } catch (err) {
      log(`apt-get install python3-torch failed (${(err as Error).message}): PyTorch's rows stay empty`)
      return null
    }
  }
  return torchVersion()
}
