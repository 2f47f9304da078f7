import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RoundTimes, TIMING_WINDOW } from '../node/rounds/index.ts'

test('RoundTimes: quantiles of the round, the ring\'s median, and the overhead taken round by round', () => {
  const times = new RoundTimes()
  assert.equal(times.summary(), null, 'nothing before the first round')
  // rounds of 1..10 ms on a ring of 0.5..9.5 ms (0.5 ms overhead each), and one late round of 100 ms
  for (let i = 1; i <= 10; i++) times.record(i, i - 0.5)
  times.record(100, 10)
  const s = times.summary()!
  assert.equal(s.rounds, 11)
  assert.equal(s.p50Ms, 6)
  assert.equal(s.p90Ms, 10)
  assert.equal(s.p99Ms, 100)
  assert.equal(s.meanMs, Math.round(155 / 11 * 1000) / 1000)
  assert.equal(s.ringP50Ms, 5.5)
  // round by round: ten rounds 0.5 ms over their ring, one 90 ms over
  assert.equal(s.overheadP50Ms, 0.5)
})

test('RoundTimes keeps the last TIMING_WINDOW rounds', () => {
  const times = new RoundTimes()
  for (let i = 0; i < TIMING_WINDOW; i++) times.record(50, 40)
  for (let i = 0; i < TIMING_WINDOW; i++) times.record(2, 1)
  const s = times.summary()!
  assert.equal(s.rounds, TIMING_WINDOW)
  assert.equal(s.p99Ms, 2, 'the older rounds are gone')
  assert.equal(s.overheadP50Ms, 1)
})
