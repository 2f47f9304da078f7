import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SimulatedClock, assign, createActor, createMachine, fromPromise, toPromise, transition, waitFor } from 'xstate'
import { trainerMachine } from '../node/trainer/machine.ts'
import type { StepReport } from '../node/trainer/machine.ts'
import { peerMachine, peerStateName } from '../node/peer/machine.ts'

/** A fake trainer loop: `perEpoch` steps an epoch, `epochs` epochs; records what ran. */
function scriptedTrainer (opts: { perEpoch: number, epochs: number, failAtStep?: number, resyncAtStep?: number, onApply?: (step: number) => void }) {
  const log: string[] = []
  let step = 0
  const report = (): StepReport => ({
    step,
    epoch: Math.floor(step / opts.perEpoch),
    epochEnded: step > 0 && step % opts.perEpoch === 0,
    finished: step >= opts.perEpoch * opts.epochs
  })
  const logic = trainerMachine.provide({
    actors: {
      prepare: fromPromise(async () => report()),
      compute: fromPromise(async () => {
        log.push('compute')
        if (step === opts.failAtStep) throw new Error('boom at compute')
      }),
      reduceGradients: fromPromise(async () => {
        log.push('reduce')
        if (step === opts.resyncAtStep) {
          opts.resyncAtStep = undefined
          return { resync: true }
        }
        return { resync: false }
      }),
      resync: fromPromise(async () => {
        step += 3 // the swarm was 3 steps ahead
        log.push(`resync ${step}`)
        return report()
      }),
      apply: fromPromise(async () => {
        step += 1
        log.push(`apply ${step}`)
        opts.onApply?.(step)
        return report()
      }),
      evaluate: fromPromise(async () => { log.push(`evaluate ${step}`) }),
      checkpoint: fromPromise(async () => { log.push(`checkpoint ${step}`) })
    }
  })
  return { logic, log }
}

test('trainer: runs every epoch, evaluates and checkpoints at epoch ends, ends done', async () => {
  const { logic, log } = scriptedTrainer({ perEpoch: 3, epochs: 2 })
  const actor = createActor(logic, { input: { checkpointEvery: 100 } }).start()
  const output = await toPromise(actor)
  assert.deepEqual(output, { reason: 'done', error: null })
  assert.deepEqual(log.filter(l => l.startsWith('evaluate')), ['evaluate 3', 'evaluate 6'])
  assert.deepEqual(log.filter(l => l.startsWith('checkpoint')), ['checkpoint 3', 'checkpoint 6', 'checkpoint 6'])
  assert.equal(log.filter(l => l === 'reduce').length, 6, 'every step is reduced before it is applied')
})

test('trainer: checkpoints every N steps', async () => {
  const { logic, log } = scriptedTrainer({ perEpoch: 10, epochs: 1 })
  const actor = createActor(logic, { input: { checkpointEvery: 4 } }).start()
  await toPromise(actor)
  assert.deepEqual(log.filter(l => l.startsWith('checkpoint')), ['checkpoint 4', 'checkpoint 8', 'checkpoint 10', 'checkpoint 10'])
})

test('trainer: a stop is honoured at the step boundary, after a final checkpoint', async () => {
  let actorRef: ReturnType<typeof createActor> | undefined
  const { logic, log } = scriptedTrainer({ perEpoch: 100, epochs: 1, onApply: step => { if (step === 5) actorRef?.send({ type: 'trainer.stop' }) } })
  const actor = createActor(logic, { input: { checkpointEvery: 1000 } })
  actorRef = actor as unknown as ReturnType<typeof createActor>
  actor.start()
  const output = await toPromise(actor)
  assert.equal(output.reason, 'stopped')
  assert.equal(log.at(-1), 'checkpoint 5', 'the last thing done is the checkpoint of the last applied step')
  assert.equal(log.filter(l => l === 'compute').length, 5, 'no step is started after the stop')
})

test('trainer: left out of a round, it fetches the swarm\'s state instead of applying its update', async () => {
  const { logic, log } = scriptedTrainer({ perEpoch: 100, epochs: 1, resyncAtStep: 4 })
  const actor = createActor(logic, { input: { checkpointEvery: 1000 } }).start()
  const output = await toPromise(actor)
  assert.equal(output.reason, 'done')
  const i = log.indexOf('resync 7')
  assert.ok(i > 0, 'it resynced')
  assert.equal(log[i - 1], 'reduce', 'right after the round it was left out of')
  assert.ok(!log.includes('apply 5') || log.indexOf('apply 8') > i, 'its own update of step 4 was never applied')
  assert.equal(log[i + 1], 'compute', 'then it trains on from the fetched state')
})

test('trainer: an error in a step ends in failed with the reason', async () => {
  const { logic, log } = scriptedTrainer({ perEpoch: 10, epochs: 1, failAtStep: 2 })
  const actor = createActor(logic, { input: { checkpointEvery: 1000 } }).start()
  const output = await toPromise(actor)
  assert.deepEqual(output, { reason: 'failed', error: 'boom at compute' })
  assert.ok(!log.includes('apply 3'))
})

test('trainer: an actor its owner did not provide fails, naming itself', async () => {
  const output = await toPromise(createActor(trainerMachine, { input: { checkpointEvery: 1000 } }).start())
  assert.deepEqual(output, { reason: 'failed', error: 'trainer actor "prepare" was not provided' })
})

/** A stand-in trainer for the root machine: reaches `done` or `stopped` on command. */
const stubTrainer = (behaviour: 'finish' | 'stop-on-request' | 'ignore-stop') => createMachine({
  id: 'stub',
  context: { reason: 'stopped' },
  initial: 'running',
  states: {
    running: {
      on: {
        'trainer.stop': behaviour === 'stop-on-request' ? 'stopped' : undefined
      },
      after: behaviour === 'finish' ? { 10: 'done' } : undefined
    },
    done: { type: 'final', entry: assign({ reason: 'done' }) },
    stopped: { type: 'final' }
  },
  output: ({ context }: any) => ({ reason: context.reason, error: null })
})

function rootWith (trainer: ReturnType<typeof stubTrainer>, calls: string[]) {
  return peerMachine.provide({
    actors: {
      start: fromPromise(async () => { calls.push('start') }),
      join: fromPromise(async () => { calls.push('join') }),
      sync: fromPromise(async () => { calls.push('sync') }),
      trainer: trainer as any,
      shutdown: fromPromise(async () => { calls.push('shutdown') })
    }
  })
}

test('root: starting → joining → syncing → training → done, and a stop from done', async () => {
  const calls: string[] = []
  const states: string[] = []
  const actor = createActor(rootWith(stubTrainer('finish'), calls), { input: { checkpointEvery: 10 } })
  actor.subscribe(s => { const n = peerStateName(s); if (states.at(-1) !== n) states.push(n) })
  actor.start()
  await waitFor(actor, s => s.matches('done'), { timeout: 2000 })
  assert.deepEqual(states, ['starting', 'joining', 'syncing', 'training', 'done'])
  actor.send({ type: 'peer.stop' })
  await waitFor(actor, s => s.matches('stopped'), { timeout: 2000 })
  assert.deepEqual(calls, ['start', 'join', 'sync', 'shutdown'])
})

test('root: training ⇄ reducing follows the trainer', () => {
  // pure transitions from a `running.training` snapshot
  const training = peerMachine.resolveState({ value: { running: 'training' }, context: { checkpointEvery: 10, error: null } })
  assert.equal(peerStateName(training), 'training')
  const [reducing] = transition(peerMachine, training, { type: 'trainer.reducing' })
  assert.equal(peerStateName(reducing), 'reducing')
  const [back] = transition(peerMachine, reducing, { type: 'trainer.training' })
  assert.equal(peerStateName(back), 'training')
})

test('root: a stop while training drains the trainer, then shuts down', async () => {
  const calls: string[] = []
  const actor = createActor(rootWith(stubTrainer('stop-on-request'), calls), { input: { checkpointEvery: 10 } }).start()
  await waitFor(actor, s => s.matches('running'), { timeout: 2000 })
  actor.send({ type: 'peer.stop' })
  await waitFor(actor, s => s.matches('stopped'), { timeout: 2000 })
  assert.deepEqual(calls, ['start', 'join', 'sync', 'shutdown'])
})

test('root: a trainer that never stops is given up on after the drain timeout', async () => {
  const calls: string[] = []
  const clock = new SimulatedClock()
  const actor = createActor(rootWith(stubTrainer('ignore-stop'), calls), { input: { checkpointEvery: 10 }, clock }).start()
  await waitFor(actor, s => s.matches('running'), { timeout: 2000 })
  actor.send({ type: 'peer.stop' })
  assert.equal(peerStateName(actor.getSnapshot()), 'stopping')
  clock.increment(59_000)
  assert.ok(actor.getSnapshot().matches({ running: 'draining' }), 'still draining before the timeout')
  clock.increment(2_000)
  await waitFor(actor, s => s.matches('stopped'), { timeout: 2000 })
  assert.ok(calls.includes('shutdown'))
})

test('root: a failed start ends in failed, and still cleans up', async () => {
  const calls: string[] = []
  const logic = rootWith(stubTrainer('finish'), calls).provide({
    actors: { start: fromPromise<void, void>(async () => { throw new Error('data dir locked') }) }
  })
  const actor = createActor(logic, { input: { checkpointEvery: 10 } }).start()
  await waitFor(actor, s => s.matches({ failed: 'halted' }), { timeout: 2000 })
  assert.equal(actor.getSnapshot().context.error, 'data dir locked')
  assert.deepEqual(calls, ['shutdown'])
})
