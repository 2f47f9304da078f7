import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SimulatedClock, createActor, fromCallback, fromPromise } from 'xstate'
import type { AnyEventObject, SnapshotFrom } from 'xstate'
import { getShortestPaths, getSimplePaths } from 'xstate/graph'
import { ringMachine, ringStateName } from '../node/ring/index.ts'
import type { RingContext, RingEvent, RingInput } from '../node/ring/index.ts'

/** The machine with inert actors: graph traversal starts invoked actors, and the defaults refuse to run. */
const inert = ringMachine.provide({ actors: { exchange: fromCallback(() => () => {}), notifyAbort: fromPromise(async () => {}) } })

const input = (members: number, gathers = false): RingInput => ({ round: 4, attempt: 1, members, gathers, connectTimeoutMs: 1000, stepTimeoutMs: 500, notifyTimeoutMs: 100 })

/**
 * Every event the machine can take in this state, with the data a real one carries; `step.done` names the step
 * under way. (An actor's error event where nothing handles it would fail the machine, as it should: only the
 * state that invokes `notifyAbort` hears from it.)
 */
function eventsFor (snapshot: SnapshotFrom<typeof inert>): RingEvent[] {
  return allEvents(snapshot).filter(event => snapshot.can(event))
}

function allEvents (snapshot: { context: RingContext }): RingEvent[] {
  const events: AnyEventObject[] = [
    { type: 'ring.connected' },
    { type: 'step.done', step: snapshot.context.step },
    { type: 'round.committed' },
    { type: 'peer.lost', peer: 'succ', reason: 'stream reset' },
    { type: 'frame.invalid', peer: 'pred', reason: 'NaN at element 3' },
    { type: 'members.mismatch', peer: 'pred', reason: 'different member list' },
    { type: 'peer.aborted', peer: 'pred', cause: 'invalid-frame', reason: '[invalid-frame] from far', culprit: 'far' },
    { type: 'round.cancel', code: 'cancelled', reason: 'cancelled by the caller' },
    { type: 'exchange.failed', error: 'TypeError: bug' },
    { type: 'xstate.after.connectTimeout.ring.running.connecting' },
    { type: 'xstate.after.stepTimeout.ring.running.reduceScatter' },
    { type: 'xstate.after.stepTimeout.ring.running.allGather' },
    { type: 'xstate.after.stepTimeout.ring.running.committing' },
    { type: 'xstate.after.notifyTimeout.ring.aborting' },
    { type: 'xstate.done.actor.notifyAbort', output: undefined },
    { type: 'xstate.error.actor.notifyAbort', error: new Error('stream closed') }
  ]
  // xstate's own events (timers, actor results) are not in the machine's event type.
  return events as RingEvent[]
}

/** What a failure event must leave in the context. */
const expectedFailure: Record<string, { code: string, cause?: string, culprit: string | null }> = {
  'peer.lost': { code: 'peer-lost', culprit: 'succ' },
  'frame.invalid': { code: 'invalid-frame', culprit: 'pred' },
  'members.mismatch': { code: 'mismatch', culprit: null },
  'peer.aborted': { code: 'peer-aborted', cause: 'invalid-frame', culprit: 'far' },
  'round.cancel': { code: 'cancelled', culprit: null },
  'exchange.failed': { code: 'internal', culprit: null },
  'xstate.after.connectTimeout.ring.running.connecting': { code: 'timeout', culprit: null },
  'xstate.after.stepTimeout.ring.running.reduceScatter': { code: 'timeout', culprit: null },
  'xstate.after.stepTimeout.ring.running.allGather': { code: 'timeout', culprit: null },
  'xstate.after.stepTimeout.ring.running.committing': { code: 'timeout', culprit: null }
}

type Snap = { value: unknown, context: RingContext, status: string, output?: unknown }

/** Assertions that hold in every state, whatever the path. */
function checkState (s: Snap, n: number, gathers = false): void {
  const c = s.context
  const where = `${JSON.stringify(s.value)} step ${c.step}`
  if (typeof s.value === 'object') {
    const sub = (s.value as { running: string }).running
    if (gathers) assert.notEqual(sub, 'reduceScatter', `${where}: a gathering round has no reduce-scatter`)
    assert.equal(c.code, null, where)
    assert.equal(c.reason, null, where)
    if (sub === 'connecting') assert.equal(c.step, 0, where)
    if (sub === 'reduceScatter') assert.ok(c.step >= 0 && c.step <= n - 2, where)
    if (sub === 'allGather') assert.ok(c.step >= n - 1 && c.step <= 2 * n - 3, where)
    if (sub === 'committing') assert.equal(c.step, 2 * n - 2, `${where}: every step done before the commit`)
    assert.equal(s.status, 'active')
  } else if (s.value === 'aborting' || s.value === 'aborted') {
    assert.ok(c.code !== null, `${where}: an aborted round has a code`)
    assert.ok(typeof c.reason === 'string' && c.reason.length > 0, `${where}: and a reason`)
    assert.ok(c.step <= 2 * n - 2)
    assert.equal(s.status, s.value === 'aborted' ? 'done' : 'active')
    if (s.value === 'aborted') assert.equal((s.output as { ok: boolean }).ok, false)
  } else {
    assert.equal(s.value, 'done')
    assert.equal(c.code, null, 'a finished round has no failure')
    assert.equal(c.step, 2 * n - 2, 'and has done every step')
    assert.equal(s.status, 'done')
    assert.deepEqual(s.output, { ok: true, code: null, cause: null, reason: null, culprit: null, steps: 2 * n - 2 })
  }
}

for (const [n, gathers] of [[1, false], [2, false], [3, false], [4, false], [2, true], [3, true], [4, true]] as const) {
  test(`machine paths (N = ${n}${gathers ? ', gathering whole vectors' : ''}): every simple path, failures included, keeps the invariants at each state`, () => {
    const paths = getSimplePaths(inert, { input: input(n, gathers), events: eventsFor })
    assert.ok(paths.length > 0)
    const covered = new Set<string>()
    const endings = new Set<string>()
    for (const path of paths) {
      let previous: Snap | null = null
      for (const step of path.steps) {
        const s = step.state as unknown as Snap
        checkState(s, n, gathers)
        if (previous !== null) {
          covered.add(`${ringStateName(previous.value, previous.context)} --${step.event.type}-->`)
          // Entering `aborting` records exactly the failure that caused it.
          if (s.value === 'aborting' && previous.value !== 'aborting') {
            const want = expectedFailure[step.event.type]
            assert.ok(want !== undefined, `unexpected way into aborting: ${step.event.type}`)
            assert.equal(s.context.code, want.code)
            assert.equal(s.context.cause, want.cause ?? want.code, 'the first cause is kept for the abort notice')
            assert.equal(s.context.culprit, want.culprit)
            assert.equal(s.context.step, previous.context.step, 'a failure does not count as a step')
          }
          // Steps advance one at a time, only on step.done (a gathering round starts at the all-gather's first).
          if (gathers && step.event.type === 'ring.connected') {
            assert.equal(s.context.step, n - 1)
          } else if (s.context.step !== previous.context.step) {
            assert.equal(step.event.type, 'step.done')
            assert.equal(s.context.step, previous.context.step + 1)
          }
        }
        previous = s
      }
      const end = path.state as unknown as Snap
      checkState(end, n, gathers)
      endings.add(typeof end.value === 'string' ? end.value : JSON.stringify(end.value))
    }
    for (const ending of ['done', 'aborting', 'aborted']) assert.ok(endings.has(ending), `some path ends in ${ending}`)
    // Every running state can fail every way, and the abort notice ends on success, error or its timeout.
    const reduceScatter = gathers ? [] : Array.from({ length: n - 1 }, (_, k) => `reduce-scatter ${k + 1}/${n - 1}`)
    const running = n === 1 ? ['connecting'] : ['connecting', ...reduceScatter, ...Array.from({ length: n - 1 }, (_, k) => `all-gather ${k + 1}/${n - 1}`), 'committing']
    for (const state of running) {
      for (const event of ['peer.lost', 'frame.invalid', 'members.mismatch', 'peer.aborted', 'round.cancel', 'exchange.failed']) {
        assert.ok(covered.has(`${state} --${event}-->`), `${state} fails on ${event}`)
      }
    }
    assert.ok(covered.has('connecting --xstate.after.connectTimeout.ring.running.connecting-->'))
    if (n > 1) {
      if (!gathers) assert.ok(covered.has(`reduce-scatter 1/${n - 1} --xstate.after.stepTimeout.ring.running.reduceScatter-->`))
      assert.ok(covered.has(`all-gather ${n - 1}/${n - 1} --xstate.after.stepTimeout.ring.running.allGather-->`))
      assert.ok(covered.has('committing --xstate.after.stepTimeout.ring.running.committing-->'))
      assert.ok(covered.has('committing --round.committed-->'))
    }
    for (const event of ['xstate.done.actor.notifyAbort', 'xstate.error.actor.notifyAbort', 'xstate.after.notifyTimeout.ring.aborting']) {
      assert.ok(covered.has(`aborting --${event}-->`), `aborting ends on ${event}`)
    }
  })
}

test('machine paths: the shortest path to done is connect, one step.done per step, then the commit', () => {
  for (const n of [1, 2, 3, 5]) {
    const paths = getShortestPaths(inert, { input: input(n), events: eventsFor, toState: s => s.value === 'done' })
    const done = paths.find(p => p.state.value === 'done')
    assert.ok(done !== undefined)
    const types = done.steps.map(s => s.event.type).slice(1)
    assert.deepEqual(types, n === 1 ? ['ring.connected'] : ['ring.connected', ...Array(2 * (n - 1)).fill('step.done'), 'round.committed'])
    if (n === 1) continue
    // gathering whole vectors: the all-gather's N − 1 steps only
    const gathering = getShortestPaths(inert, { input: input(n, true), events: eventsFor, toState: s => s.value === 'done' }).find(p => p.state.value === 'done')
    assert.deepEqual(gathering?.steps.map(s => s.event.type).slice(1), ['ring.connected', ...Array(n - 1).fill('step.done'), 'round.committed'])
  }
})

test('machine: a step.done for another step than the current one is ignored', () => {
  const actor = createActor(inert, { input: input(3) }).start()
  actor.send({ type: 'ring.connected' })
  actor.send({ type: 'step.done', step: 1 })
  assert.deepEqual(actor.getSnapshot().value, { running: 'reduceScatter' })
  assert.equal(actor.getSnapshot().context.step, 0)
  actor.stop()
})

/** A machine whose actors do nothing on their own: time is the only thing that moves it. */
function idle (clock: SimulatedClock, n: number, notify: 'hangs' | 'resolves' = 'hangs') {
  const notices: unknown[] = []
  const logic = ringMachine.provide({
    actors: {
      exchange: fromCallback(() => () => {}),
      notifyAbort: fromPromise(async ({ input }) => {
        notices.push(input)
        if (notify === 'hangs') await new Promise(() => {})
      })
    }
  })
  return { actor: createActor(logic, { input: input(n), clock }), notices }
}

test('machine clock: connecting times out after connectTimeout, then the notice is bounded by notifyTimeout', () => {
  const clock = new SimulatedClock()
  const { actor, notices } = idle(clock, 3)
  actor.start()
  clock.increment(999)
  assert.deepEqual(actor.getSnapshot().value, { running: 'connecting' })
  clock.increment(1)
  assert.equal(actor.getSnapshot().value, 'aborting')
  assert.deepEqual(notices, [{ round: 4, attempt: 1, code: 'timeout', reason: 'neighbours not connected within 1000 ms', culprit: null }])
  clock.increment(100)
  assert.equal(actor.getSnapshot().value, 'aborted')
  assert.equal(actor.getSnapshot().output?.code, 'timeout')
})

test('machine clock: each step.done restarts the step timer', () => {
  const clock = new SimulatedClock()
  const { actor } = idle(clock, 3)
  actor.start()
  actor.send({ type: 'ring.connected' })
  for (let step = 0; step < 3; step++) {
    clock.increment(499)
    actor.send({ type: 'step.done', step })
  }
  assert.deepEqual(actor.getSnapshot().value, { running: 'allGather' })
  assert.equal(actor.getSnapshot().context.step, 3)
  clock.increment(499)
  assert.deepEqual(actor.getSnapshot().value, { running: 'allGather' })
  clock.increment(1)
  assert.equal(actor.getSnapshot().value, 'aborting')
  assert.match(actor.getSnapshot().context.reason ?? '', /all-gather step 2\/2 took longer than 500 ms/)
})

test('machine clock: a notice that completes ends the round at once; a cancel is not a timeout', async () => {
  const clock = new SimulatedClock()
  const { actor } = idle(clock, 2, 'resolves')
  actor.start()
  actor.send({ type: 'ring.connected' })
  actor.send({ type: 'round.cancel', code: 'stopped', reason: 'ring stopped' })
  await new Promise(resolve => { setImmediate(resolve) })
  assert.equal(actor.getSnapshot().value, 'aborted')
  assert.deepEqual(actor.getSnapshot().output, { ok: false, code: 'stopped', cause: 'stopped', reason: 'ring stopped', culprit: null, steps: 0 })
})
