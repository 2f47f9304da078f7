/**
 * `npm start`: trains the default job on a fresh data dir and prints the final
 * test accuracy. Extra arguments go to `peer start` (e.g. `npm start -- --epochs 2`).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const dataDir = mkdtempSync(join(tmpdir(), 'peer-start-'))
process.stdout.write(`data dir: ${dataDir}\n`)
const child = spawn(process.execPath, [join(root, 'bin', 'peer.js'), 'start', '--data-dir', dataDir, '--exit-when-done', ...process.argv.slice(2)], { stdio: 'inherit' })
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { child.kill(signal) })
child.on('exit', (code, signal) => { process.exit(code ?? (signal !== null ? 1 : 0)) })
