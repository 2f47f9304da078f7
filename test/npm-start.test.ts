/**
 * `npm start` (scripts/start.ts): a local swarm of real peer processes, all started at once (the first one's
 * identity, swarm key and port are chosen before it runs, so the others have its token from the start and dial
 * it until it listens); they train the job together and end with identical weights.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT, tempDir } from './helpers/peer-process.ts'

test('npm start -- --peers 2 --epochs 1: the peers start at once, train together and end with identical weights', async () => {
  const dir = await tempDir('peer-npm-start-')
  try {
    // the data dirs go under TMPDIR: this test's own dir
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'start.ts'), '--peers', '2', '--epochs', '1'], { env: { ...process.env, TMPDIR: dir.path }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 120_000)
    const code = await new Promise<number | null>(resolve => { child.on('exit', c => { resolve(c) }) })
    clearTimeout(timer)
    assert.equal(code, 0, `npm start exited ${code}:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`)
    const done = stdout.split('\n').filter(l => /^\[peer-\d\] done: 1 epochs/.test(l))
    assert.equal(done.length, 2, `both peers finished:\n${stdout.slice(-2000)}`)
    assert.match(stdout, /all 2 peers hold identical weights/)
    // one data dir per peer, under TMPDIR
    const [base] = (await readdir(dir.path)).filter(n => n.startsWith('peer-start-'))
    assert.deepEqual((await readdir(join(dir.path, base))).sort(), ['peer-1', 'peer-2'])
  } finally {
    await dir.remove()
  }
})
