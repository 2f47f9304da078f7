import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SimulatedClock, createActor, fromPromise, toPromise } from 'xstate'
import { membersOf, proposerOf, roundsMachine } from '../node/rounds/index.ts'
import type { ReduceOutput, RoundsInput } from '../node/rounds/index.ts'
import type { ProposeMessage, ReadyMessage } from '../protocols/rounds/index.ts'

const ready = (round: number, attempt: number, weightsHash = 'h'): ReadyMessage => ({ t: 'ready', round, attempt, samples: 64, weightsHash, step: round })

/** A rounds machine whose publishing and reducing are recorded; `reduceResults` answer the reduce calls in turn. */
function harness (input: Partial<RoundsInput> & { self: string }, reduceResults: ReduceOutput[] = [{ ok: true }]) {
  const announced: Array<{ round: number, attempt: number }> = []
  const proposed: ProposeMessage[] = []
  const reduced: Array<{ attempt: number, members: string[] }> = []
  const clock = new SimulatedClock()
  const logic = roundsMachine.provide({
    actors: {
      announce: fromPromise(async ({ input: i }: { input: { round: number, attempt: number } }) => { announced.push(i) }),
      propose: fromPromise(async ({ input: p }: { input: ProposeMessage }) => { proposed.push(p) }),
      reduce: fromPromise(async ({ input: r }: { input: { round: number, attempt: number, members: string[] } }) => {
        reduced.push({ attempt: r.attempt, members: r.members })
        return reduceResults.shift() ?? { ok: true as const }
      })
    }
  })
  const actor = createActor(logic, { clock, input: { round: 7, weightsHash: 'h', expected: ['a', 'b', 'c'], ...input } })
  actor.start()
  return { actor, clock, announced, proposed, reduced }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

test('the lowest ready member proposes once every expected member is ready; the list is sorted', async () => {
  const h = harness({ self: 'a' })
  await settle()
  assert.deepEqual(h.announced, [{ round: 7, attempt: 0 }])
  h.actor.send({ type: 'ready.received', from: 'c', message: ready(7, 0) })
  await settle()
  assert.equal(h.proposed.length, 0, 'b is not ready yet')
  h.actor.send({ type: 'ready.received', from: 'b', message: ready(7, 0) })
  const out = await toPromise(h.actor)
  assert.deepEqual(h.proposed.map(p => p.members), [['a', 'b', 'c']])
  assert.deepEqual(h.reduced, [{ attempt: 0, members: ['a', 'b', 'c'] }])
  assert.equal(out.outcome, 'done')
})

test('a member that is not the lowest waits for the proposal, then reduces with its list', async () => {
  const h = harness({ self: 'b' })
  h.actor.send({ type: 'ready.received', from: 'a', message: ready(7, 0) })
  h.actor.send({ type: 'ready.received', from: 'c', message: ready(7, 0) })
  await settle()
  assert.equal(h.proposed.length, 0)
  h.actor.send({ type: 'proposal.received', from: 'a', message: { t: 'propose', round: 7, attempt: 0, members: ['a', 'b', 'c'], weightsHash: 'h' } })
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'done')
  assert.deepEqual(out.members, ['a', 'b', 'c'])
})

test('a proposal without this member leaves it excluded (it must fetch the swarm\'s state)', async () => {
  const h = harness({ self: 'b' })
  await settle()
  h.actor.send({ type: 'proposal.received', from: 'a', message: { t: 'propose', round: 7, attempt: 0, members: ['a', 'c'], weightsHash: 'h' } })
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'excluded')
  assert.equal(h.reduced.length, 0)
})

test('after the collect timeout the proposer goes ahead with the members that are ready', async () => {
  const h = harness({ self: 'a' })
  h.actor.send({ type: 'ready.received', from: 'b', message: ready(7, 0) })
  await settle()
  assert.equal(h.proposed.length, 0, 'c is expected and not ready')
  h.clock.increment(7999)
  await settle()
  assert.equal(h.proposed.length, 0, 'not before the timeout')
  h.clock.increment(2)
  await toPromise(h.actor)
  assert.deepEqual(h.proposed[0].members, ['a', 'b'])
})

test('an aborted reduction retries as the next attempt, without the culprit excluded by the caller', async () => {
  const h = harness({ self: 'a' }, [{ ok: false, reason: 'peer-lost', culprit: 'c' }, { ok: true }])
  h.actor.send({ type: 'ready.received', from: 'b', message: ready(7, 0) })
  h.actor.send({ type: 'ready.received', from: 'c', message: ready(7, 0) })
  await settle()
  assert.deepEqual(h.reduced.map(r => r.members), [['a', 'b', 'c']])
  h.actor.send({ type: 'members.changed', live: ['a', 'b', 'c'], excluded: ['c'] })
  h.actor.send({ type: 'ready.received', from: 'b', message: ready(7, 1) }) // b retried sooner: kept for attempt 1
  h.clock.increment(100) // backoff
  const out = await toPromise(h.actor)
  assert.deepEqual(h.announced, [{ round: 7, attempt: 0 }, { round: 7, attempt: 1 }])
  assert.deepEqual(h.reduced.map(r => r.members), [['a', 'b', 'c'], ['a', 'b']])
  assert.equal(out.attempt, 1)
  assert.equal(out.aborts, 1)
})

test('no proposal in time: the member moves to the next attempt', async () => {
  const h = harness({ self: 'b' })
  h.actor.send({ type: 'ready.received', from: 'a', message: ready(7, 0) })
  await settle()
  h.clock.increment(11_001)
  await settle()
  h.clock.increment(100)
  await settle()
  assert.deepEqual(h.announced.map(a => a.attempt), [0, 1])
  h.actor.send({ type: 'round.cancel' })
  assert.equal((await toPromise(h.actor)).outcome, 'cancelled')
})

test('membership: the majority weight hash wins; the proposer is the lowest ready peer', () => {
  const r = (peer: string, weightsHash: string, attempt = 0) => ({ peer, weightsHash, samples: 1, attempt })
  assert.deepEqual(membersOf({ c: r('c', 'x'), a: r('a', 'x'), b: r('b', 'y') }), { members: ['a', 'c'], weightsHash: 'x' })
  assert.deepEqual(membersOf({ a: r('a', 'x'), b: r('b', 'x') }, ['b']).members, ['a'])
  assert.equal(proposerOf({ self: 'm', ready: { z: r('z', 'x'), k: r('k', 'x'), a: r('a', 'x', 1) }, attempt: 0 }), 'k')
})
