import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runPeer, spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'

interface Status {
  state: string
  pid: number
  backend: string
  job: { id: string, epochs: number } | null
  training: { step: number, epoch: number, weightsHash: string, accuracy: number | null } | null
}

async function statusOf (dataDir: string): Promise<Status | undefined> {
  const r = await runPeer(['status', '--json', '--data-dir', dataDir], { timeoutMs: 20_000 })
  if (r.code !== 0) return undefined
  return JSON.parse(r.stdout) as Status
}

test('bad flags: a clear message and exit code 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['start', '--batch-size', '0'], /batch-size.*positive integer/],
    [['start', '--backend', 'webgpu'], /backend.*webgpu|webgpu.*backend/],
    [['start', '--compute', 'gpu'], /compute.*gpu|gpu.*compute/],
    [['start', '--compute', 'worker', '--backend', 'cpu'], /--compute worker needs the wasm backend, not --backend cpu/],
    [['start', '--dataset', 'imagenet'], /imagenet/],
    [['start', '--hidden', '12,x'], /hidden/],
    [['start', '--lr-scaling', 'cubic'], /lr-scaling.*cubic|cubic.*lr-scaling/],
    [['start', '--lr-scaling', 'sqrt', '--sync-every', '4'], /lrScaling is for H = 1/],
    [['frobnicate'], /unknown command/]
  ]
  for (const [args, message] of cases) {
    const r = await runPeer(args, { timeoutMs: 20_000 })
    assert.equal(r.code, 2, `${args.join(' ')}: exit code (stderr: ${r.stderr})`)
    assert.match(r.stderr, message, args.join(' '))
  }
})

test('an invalid job file names the file and the bad field', async () => {
  const dir = await tempDir()
  try {
    const file = join(dir.path, 'job.json')
    await writeFile(file, JSON.stringify({ dataset: 'mnist', batchSize: -4 }))
    let r = await runPeer(['start', '--job', file, '--data-dir', join(dir.path, 'd')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /job\.json: invalid job: batchSize/)
    await writeFile(file, JSON.stringify({ dataset: 'imagenet' }))
    r = await runPeer(['start', '--job', file, '--data-dir', join(dir.path, 'd')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /invalid job: dataset/)
    await writeFile(file, '{"epochs": 3,')
    r = await runPeer(['start', '--job', file, '--data-dir', join(dir.path, 'd')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /not JSON/)
    r = await runPeer(['start', '--job', join(dir.path, 'missing.json'), '--data-dir', join(dir.path, 'd')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /cannot read job file .*missing\.json/)
    assert.ok(!existsSync(join(dir.path, 'd', 'db')), 'nothing was written for a bad job')
  } finally {
    await dir.remove()
  }
})

test('status and stop with no running peer say so and exit non-zero', async () => {
  const dir = await tempDir()
  try {
    for (const cmd of ['status', 'stop']) {
      const r = await runPeer([cmd, '--data-dir', dir.path])
      assert.equal(r.code, 1, cmd)
      assert.match(r.stderr, /no peer is running on data dir/, cmd)
    }
    assert.ok(!existsSync(join(dir.path, 'db')), 'status never starts a peer')
  } finally {
    await dir.remove()
  }
})

test('a peer trains, refuses a second peer on its data dir, stops on SIGTERM, and resumes from its checkpoint', async () => {
  const dir = await tempDir()
  const dataDir = join(dir.path, 'peer')
  const args = ['start', '--data-dir', dataDir, '--epochs', '40', '--hidden', '64', '--checkpoint-every', '25']
  const first = spawnPeer(args)
  try {
    const moving = await waitFor('the step to advance', async () => {
      const s = await statusOf(dataDir)
      return s?.training !== null && s !== undefined && s.training.step >= 30 ? s : undefined
    })
    assert.equal(moving.state, 'training')
    assert.ok(['wasm', 'cpu', 'tensorflow', 'tensorflow-gpu'].includes(moving.backend))
    assert.equal(moving.pid, first.child.pid)

    // the control API refuses requests without the token, and with a wrong one
    const api = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
    assert.match(api.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal((await fetch(`${api.url}/status`)).status, 401)
    assert.equal((await fetch(`${api.url}/status`, { headers: { authorization: 'Bearer 00' } })).status, 401)

    // a second peer on the same data dir is refused, naming the running one
    const second = await runPeer(args)
    assert.equal(second.code, 1)
    assert.match(second.stderr, new RegExp(`in use by the peer with pid ${first.child.pid}`))

    first.child.kill('SIGTERM')
    const exit = await first.exited(60_000)
    assert.equal(exit.code, 0, exit.stderr)
    assert.ok(!existsSync(join(dataDir, 'api.json')), 'api.json is removed on exit')
    assert.match(exit.stdout, /stopping: finishing the current step and writing a checkpoint/)
    const stoppedAt = moving.training!.step

    const again = spawnPeer(['start', '--data-dir', dataDir])
    try {
      const resumed = await waitFor('the restarted peer to train', async () => {
        const s = await statusOf(dataDir)
        return s?.state === 'training' ? s : undefined
      })
      assert.ok(resumed.training!.step >= stoppedAt, `resumed at step ${resumed.training!.step}, stopped after step ${stoppedAt}`)
      assert.match(again.stdout, /resumed at step \d+/)
      const resumedStep = Number(/resumed at step (\d+)/.exec(again.stdout)![1])
      assert.ok(resumedStep >= stoppedAt, `checkpoint step ${resumedStep} >= ${stoppedAt}`)
      assert.equal(resumed.job!.epochs, 40, 'the restarted peer adopts the job stored in its data dir')

      // a stop through the CLI
      const stop = await runPeer(['stop', '--data-dir', dataDir])
      assert.equal(stop.code, 0, stop.stderr)
      assert.equal((await again.exited(60_000)).code, 0)
    } finally {
      again.child.kill('SIGKILL')
    }
  } finally {
    first.child.kill('SIGKILL')
    await dir.remove()
  }
})

test('a killed peer leaves a stale api.json that status detects and the next start replaces', async () => {
  const dir = await tempDir()
  const dataDir = join(dir.path, 'peer')
  const first = spawnPeer(['start', '--data-dir', dataDir, '--epochs', '40', '--hidden', '32', '--checkpoint-every', '10'])
  try {
    await waitFor('the step to pass 25', async () => {
      const s = await statusOf(dataDir)
      return s?.training !== null && s !== undefined && s.training.step >= 25 ? s : undefined
    })
    first.child.kill('SIGKILL')
    await first.exited()
    assert.ok(existsSync(join(dataDir, 'api.json')))
    const r = await runPeer(['status', '--data-dir', dataDir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /stale/)
    const again = spawnPeer(['start', '--data-dir', dataDir])
    try {
      const s = await waitFor('the restarted peer to train', async () => {
        const st = await statusOf(dataDir)
        return st?.state === 'training' ? st : undefined
      })
      assert.ok(s.training!.step >= 20, `resumed from the periodic checkpoint, at step ${s.training!.step}`)
    } finally {
      again.child.kill('SIGTERM')
      await again.exited()
    }
  } finally {
    first.child.kill('SIGKILL')
    await dir.remove()
  }
})

test('a job asked for on a data dir that holds another job is refused', async () => {
  const dir = await tempDir()
  const dataDir = join(dir.path, 'peer')
  try {
    const done = await runPeer(['start', '--data-dir', dataDir, '--epochs', '1', '--hidden', '16', '--exit-when-done'], { timeoutMs: 120_000 })
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /done: 1 epochs, step \d+, test accuracy 0\.\d+/)
    const r = await runPeer(['start', '--data-dir', dataDir, '--epochs', '2', '--exit-when-done'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /holds job [0-9a-f]{16} .*not the job asked for/)
  } finally {
    await dir.remove()
  }
})
