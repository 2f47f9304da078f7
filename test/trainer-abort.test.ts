/**
 * The abort signal along the step path: a trainer machine that is stopped while its `allReduce` or `resync`
 * hook waits fires the signal the hook was given (a real Trainer on mnist), and `Rounds.round` ends its wait
 * for a round when its signal fires (a real libp2p host, a member that never answers).
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { createActor } from 'xstate'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { jobId, parseJob } from '../protocols/job/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { RowSet } from '../node/data/stream/index.ts'
import { CheckpointStore, Trainer, createTrainerLogic, selectBackend } from '../node/trainer/index.ts'
import type { BinaryStore, TrainerHooks } from '../node/trainer/index.ts'
import { startNetwork } from '../node/network/index.ts'
import { Ring, createTcpRingTransport } from '../node/ring/index.ts'
import { Rounds } from '../node/rounds/index.ts'

await selectBackend('wasm')

const logger = pino({ level: 'silent' })
const stoppers: Array<() => Promise<void>> = []
after(async () => { for (const s of stoppers) await s().catch(() => {}) })

/** Resolves with what `check` returns once it is not undefined; rejects after `ms`. */
async function until<T> (what: string, check: () => T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

function memoryStore (): BinaryStore {
  const m = new Map<string, Uint8Array>()
  return { get: async (key: string) => m.get(key), put: async (key: string, value: Uint8Array) => { m.set(key, value) } }
}

function trainer (): Trainer {
  const job = parseJob({ hidden: [8], batchSize: 16, seed: 3 })
  const t = new Trainer({ job, jobId: jobId(job), dataset: loadDataset('mnist') })
  t.setRows(RowSet.fromRanges([[0, 256]]))
  return t
}

/** A hook that waits until its signal fires, and records that it did. */
function waitsForAbort (): { wait: (signal: AbortSignal) => Promise<void>, signal: AbortSignal | null, ended: boolean } {
  const state = {
    signal: null as AbortSignal | null,
    ended: false,
    wait: async (signal: AbortSignal): Promise<void> => {
      state.signal = signal
      await new Promise<void>(resolve => {
        if (signal.aborted) resolve()
        else signal.addEventListener('abort', () => { resolve() }, { once: true })
      })
      state.ended = true
    }
  }
  return state
}

test('stopping the trainer machine fires the signal its allReduce hook waits on', async () => {
  const t = trainer()
  const hook = waitsForAbort()
  const hooks: TrainerHooks = { allReduce: async (_vector, _samples, signal) => { await hook.wait(signal); return null } }
  const actor = createActor(createTrainerLogic(() => t, new CheckpointStore(memoryStore()), hooks), { input: { checkpointEvery: 1_000_000 } })
  actor.start()
  const signal = await until('the allReduce hook', () => hook.signal ?? undefined)
  assert.equal(signal.aborted, false, 'not aborted while the trainer runs')
  actor.stop()
  await until('the hook to end', () => hook.ended ? true : undefined)
  assert.equal(signal.aborted, true)
  t.dispose()
})

test('stopping the trainer machine fires the signal its resync hook waits on', async () => {
  const t = trainer()
  const hook = waitsForAbort()
  // left out of the round: the machine resyncs
  const hooks: TrainerHooks = { allReduce: async () => null, resync: async signal => { await hook.wait(signal) } }
  const actor = createActor(createTrainerLogic(() => t, new CheckpointStore(memoryStore()), hooks), { input: { checkpointEvery: 1_000_000 } })
  actor.start()
  const signal = await until('the resync hook', () => hook.signal ?? undefined)
  actor.stop()
  await until('the hook to end', () => hook.ended ? true : undefined)
  assert.equal(signal.aborted, true)
  t.dispose()
})

test('Rounds.round ends its wait for a round when its signal fires', async () => {
  const network = await startNetwork({ privateKey: await generateKeyPair('Ed25519') as unknown as PrivateKey, listen: ['/ip4/127.0.0.1/tcp/0'], join: [], mdns: false, logger })
  stoppers.push(async () => { await network.stop() })
  const ring = new Ring({ transport: createTcpRingTransport({ self: network.peerId, resolve: () => undefined }) })
  // a member that never announces itself, and a collect timeout far away: without the signal the round waits
  const rounds = new Rounds({ network, ring, liveMembers: () => [network.peerId, 'ghost'], logger }, { jobId: 'abort-test', collectTimeoutMs: 600_000 })
  assert.equal(rounds.isStarted, false)
  rounds.start()
  assert.equal(rounds.isStarted, true)
  stoppers.push(async () => { rounds.stop() })
  const request = () => ({ round: 0, vector: new Float32Array([1, 2, 1]), weightsHash: () => 'w', samples: 1, step: 0 })

  const controller = new AbortController()
  let outcome: Awaited<ReturnType<Rounds['round']>> | undefined
  const running = rounds.round(request(), controller.signal).then(o => { outcome = o })
  await until('the agreement to wait', () => rounds.status.state === 'waiting' ? true : undefined)
  assert.equal(outcome, undefined, 'still waiting for the ghost')
  controller.abort()
  await until('the round to end', () => outcome)
  await running
  assert.deepEqual(outcome, { ok: false, outcome: 'cancelled', members: [] })

  // a signal that fired already: the round does not start
  const fired = AbortSignal.abort()
  assert.deepEqual(await rounds.round(request(), fired), { ok: false, outcome: 'cancelled', members: [] })
})
