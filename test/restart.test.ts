/**
 * The whole swarm is killed and restarted on its data dirs: training resumes
 * from the newest checkpoint the peers hold, not from zero, and finishes with
 * identical weights and the accuracy of an undisturbed run.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'

const TIMING = ['--checkpoint-every', '10', '--heartbeat-ms', '500', '--member-timeout', '2500', '--round-timeout', '4000', '--step-timeout', '2000', '--progress-every', '600', '--min-peers', '3']
const NAMES = ['p1', 'p2', 'p3']

let swarm: LocalSwarm
before(async () => { swarm = await LocalSwarm.create() })
after(async () => { await swarm.stopAll() })

test('kill all, restart all: training resumes from the newest checkpoint and finishes', async () => {
  await swarm.start('p1', ['--epochs', '6', ...TIMING])
  await swarm.start('p2', TIMING, 'p1')
  await swarm.start('p3', TIMING, 'p1')
  const before = await waitFor('40 rounds', async () => {
    const all = await swarm.statuses(NAMES)
    return all !== undefined && all.every(s => (s.ring?.round ?? 0) >= 40) ? all : undefined
  }, 90_000, 200)
  const ids = before.map(s => s.peerId)
  for (const n of NAMES) swarm.proc(n).child.kill('SIGKILL')
  await Promise.all(NAMES.map(async n => await swarm.proc(n).exited()))
  const killedAt = Math.max(...before.map(s => s.training!.step))

  // every peer restarts on its own data dir; the first one has a new port, the others join through it
  await swarm.start('p1', TIMING)
  await swarm.start('p2', TIMING, 'p1')
  await swarm.start('p3', TIMING, 'p1')
  const resumed = await waitFor('the restarted swarm to train', async () => {
    const all = await swarm.statuses(NAMES)
    return all !== undefined && all.every(s => s.state === 'training' || s.state === 'reducing') ? all : undefined
  }, 60_000, 200)
  assert.deepEqual(resumed.map(s => s.peerId), ids, 'each peer kept its identity')
  for (const s of resumed) {
    // checkpoints every 10 steps: the newest one is at most 10 steps (and the kill's round) behind
    assert.ok(s.training!.step >= killedAt - 12, `resumed at step ${s.training!.step}, killed at ${killedAt}: not from zero (${JSON.stringify(resumed.map(x => [x.training?.step, x.syncs.length, x.state]))})`)
  }
  const finals = await waitFor('the job to finish', async () => {
    const all = await swarm.statuses(NAMES)
    return all !== undefined && all.every(s => s.state === 'done') ? all : undefined
  }, 240_000, 500)
  assert.equal(new Set(finals.map(s => s.training!.weightsHash)).size, 1, finals.map(s => s.training!.weightsHash).join(' '))
  for (const s of finals) assert.ok(s.training!.accuracy! >= 0.94, `accuracy ${s.training!.accuracy}`)
})
