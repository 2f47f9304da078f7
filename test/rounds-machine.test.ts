import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SimulatedClock, createActor, fromPromise, toPromise } from 'xstate'
import { compareRank, hasQuorum, membersOf, proposerOf, roundsMachine } from '../node/rounds/index.ts'
import type { AttemptResult, RoundsInput } from '../node/rounds/index.ts'
import type { ProposeMessage, ReadyMessage } from '../protocols/rounds/index.ts'

const ready = (round: number, attempt: number, weightsHash = 'h'): ReadyMessage => ({ t: 'ready', round, attempt, samples: 64, weightsHash, step: round })

/** A rounds machine whose publishing and reducing are recorded; `reduceResults` answer the allReduce calls in turn. */
function harness (input: Partial<RoundsInput> & { self: string }, reduceResults: AttemptResult[] = [{ ok: true }]) {
  const announced: Array<{ round: number, attempt: number }> = []
  const proposed: ProposeMessage[] = []
  const reduced: Array<{ attempt: number, members: string[] }> = []
  const clock = new SimulatedClock()
  const logic = roundsMachine.provide({
    actors: {
      announce: fromPromise(async ({ input: i }: { input: { round: number, attempt: number } }) => { announced.push(i) }),
      propose: fromPromise(async ({ input: p }: { input: ProposeMessage }) => { proposed.push(p) }),
      allReduce: fromPromise(async ({ input: r }: { input: { round: number, attempt: number, members: string[], epoch: number } }) => {
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
  h.clock.increment(3999)
  await settle()
  assert.equal(h.proposed.length, 0, 'not before the timeout')
  h.clock.increment(2)
  await toPromise(h.actor)
  assert.deepEqual(h.proposed[0].members, ['a', 'b'])
})

test('a hold (a member fetching this peer\'s state) starts the collect wait again; the member is then waited for', async () => {
  const h = harness({ self: 'a' })
  h.actor.send({ type: 'ready.received', from: 'b', message: ready(7, 0) })
  await settle()
  h.clock.increment(3000)
  h.actor.send({ type: 'collect.hold' })
  await settle()
  h.clock.increment(3000)
  await settle()
  assert.equal(h.proposed.length, 0, '6 s in, but 3 s since the hold')
  h.actor.send({ type: 'ready.received', from: 'c', message: ready(7, 0) })
  await toPromise(h.actor)
  assert.deepEqual(h.proposed[0].members, ['a', 'b', 'c'])
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
  const r = (peer: string, weightsHash: string, attempt = 0) => ({ peer, weightsHash, samples: 1, attempt, epoch: 0 })
  assert.deepEqual(membersOf({ c: r('c', 'x'), a: r('a', 'x'), b: r('b', 'y') }), { members: ['a', 'c'], weightsHash: 'x' })
  assert.deepEqual(membersOf({ a: r('a', 'x'), b: r('b', 'x') }, ['b']).members, ['a'])
  assert.equal(proposerOf({ self: 'm', ready: { z: r('z', 'x'), k: r('k', 'x'), a: r('a', 'x', 1) }, attempt: 0 }), 'k')
})

test('a proposal starts the epoch above the highest one announced', async () => {
  const h = harness({ self: 'a', epoch: 3, base: ['a', 'b', 'c'] })
  h.actor.send({ type: 'ready.received', from: 'b', message: { ...ready(7, 0), epoch: 5 } })
  h.actor.send({ type: 'ready.received', from: 'c', message: { ...ready(7, 0), epoch: 3 } })
  const out = await toPromise(h.actor)
  assert.equal(h.proposed[0].epoch, 6)
  assert.equal(out.epoch, 6)
})

test('a minority of the last group does not propose: after the collect timeout it is partitioned', async () => {
  const h = harness({ self: 'c', expected: ['c'], base: ['a', 'b', 'c'], epoch: 4 })
  await settle()
  assert.equal(h.proposed.length, 0, 'alone of three: no quorum')
  h.clock.increment(4001)
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'partitioned')
  assert.equal(h.proposed.length, 0)
  assert.equal(h.reduced.length, 0)
})

test('the majority side proposes without the member it lost', async () => {
  const h = harness({ self: 'a', base: ['a', 'b', 'c'], epoch: 4 })
  h.actor.send({ type: 'ready.received', from: 'b', message: { ...ready(7, 0), epoch: 4 } })
  await settle()
  h.clock.increment(4001)
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'done')
  assert.deepEqual(out.members, ['a', 'b'])
  assert.equal(out.epoch, 5)
})

test('a member asked into a group that holds no quorum of its own last group does not reduce', async () => {
  const h = harness({ self: 'c', base: ['a', 'b', 'c', 'd', 'e'], epoch: 2 })
  h.actor.send({ type: 'proposal.received', from: 'b', message: { t: 'propose', round: 7, attempt: 0, members: ['b', 'c'], weightsHash: 'h', epoch: 3 } })
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'partitioned')
  assert.equal(h.reduced.length, 0)
})

test('quorum: a strict majority; half with the lowest id; either member of two; anything without a last group', () => {
  assert.equal(hasQuorum(null, ['x']), true)
  assert.equal(hasQuorum(['a', 'b', 'c'], ['a', 'b']), true)
  assert.equal(hasQuorum(['a', 'b', 'c'], ['c']), false)
  assert.equal(hasQuorum(['a', 'b', 'c'], ['c', 'd', 'e']), false, 'newcomers do not make up for lost members')
  assert.equal(hasQuorum(['a', 'b', 'c', 'd'], ['a', 'd']), true)
  assert.equal(hasQuorum(['a', 'b', 'c', 'd'], ['b', 'c']), false)
  assert.equal(hasQuorum(['a', 'b'], ['b']), true)
  assert.equal(hasQuorum(['a'], ['a', 'b']), true)
})

test('rank: a later epoch wins over any round; in one epoch the larger group, then the lower lead, then the round', () => {
  const rank = (epoch: number, size: number, lead: string, round: number) => ({ epoch, size, lead, round })
  assert.ok(compareRank(rank(5, 2, 'a', 10), rank(4, 3, 'a', 9000)) > 0, 'a minority that trained alone never wins by its round')
  assert.ok(compareRank(rank(5, 3, 'b', 1), rank(5, 2, 'a', 9)) > 0)
  assert.ok(compareRank(rank(5, 1, 'a', 1), rank(5, 1, 'b', 9)) > 0)
  assert.ok(compareRank(rank(5, 2, 'a', 9), rank(5, 2, 'a', 8)) > 0)
  assert.equal(compareRank(rank(5, 2, 'a', 9), rank(5, 2, 'a', 9)), 0)
})

test('a member that sees a later attempt announced jumps to it instead of waiting out its own', async () => {
  const h = harness({ self: 'c', attempt: 1 })
  await settle()
  h.actor.send({ type: 'ready.received', from: 'a', message: ready(7, 3) })
  await settle()
  assert.deepEqual(h.announced.map(a => a.attempt), [1, 3])
  h.actor.send({ type: 'proposal.received', from: 'a', message: { t: 'propose', round: 7, attempt: 3, members: ['a', 'c'], weightsHash: 'h', epoch: 1 } })
  const out = await toPromise(h.actor)
  assert.equal(out.outcome, 'done')
  assert.equal(out.attempt, 3)
})
