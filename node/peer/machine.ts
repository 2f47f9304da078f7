/**
 * The root actor's protocol:
 *
 *   starting → joining → syncing → training ⇄ reducing → done
 *                                        └──── stop ────→ stopping → stopped
 *   any of them ──error──→ failed
 *
 * It wires and decides; the work is in invoked actors provided by index.ts
 * (open the data dir, join the swarm, restore state, run the trainer, shut
 * down), so that tests can swap them with `provide`.
 */
import { assign, sendTo, setup } from 'xstate'
import type { SnapshotFrom } from 'xstate'
import { trainerMachine } from '../trainer/machine.ts'
import type { TrainerOutput } from '../trainer/machine.ts'
import { errorText, notProvided, recordErrorThen } from '../common/machine.ts'

export interface PeerContext {
  checkpointEvery: number
  error: string | null
  /** The failure's error name (`InvalidModelError`…), where it had one. */
  errorName?: string | null
}

export type PeerEvent =
  | { type: 'peer.stop' }
  | { type: 'trainer.reducing' }
  | { type: 'trainer.training' }

export const peerMachine = setup({
  types: {
    context: {} as PeerContext,
    events: {} as PeerEvent,
    input: {} as { checkpointEvery: number }
  },
  actors: {
    start: notProvided('peer', 'start'),
    join: notProvided('peer', 'join'),
    sync: notProvided('peer', 'sync'),
    trainer: trainerMachine,
    shutdown: notProvided('peer', 'shutdown')
  },
  delays: {
    /** How long a stop waits for the trainer to finish its step and write its checkpoint. */
    drainTimeout: 60_000
  },
  actions: {
    recordError: assign({
      error: (_, params: { error: unknown }) => errorText(params.error),
      errorName: (_, params: { error: unknown }) => (params.error instanceof Error ? params.error.name : null)
    })
  }
}).createMachine({
  id: 'peer',
  context: ({ input }) => ({ checkpointEvery: input.checkpointEvery, error: null }),
  initial: 'starting',
  states: {
    starting: {
      invoke: {
        src: 'start',
        onDone: 'joining',
        onError: recordErrorThen('failed')
      },
      on: { 'peer.stop': 'stopping' }
    },
    joining: {
      invoke: {
        src: 'join',
        onDone: 'syncing',
        onError: recordErrorThen('failed')
      },
      on: { 'peer.stop': 'stopping' }
    },
    syncing: {
      invoke: {
        src: 'sync',
        onDone: 'running',
        onError: recordErrorThen('failed')
      },
      on: { 'peer.stop': 'stopping' }
    },
    running: {
      invoke: {
        id: 'trainer',
        src: 'trainer',
        input: ({ context }) => ({ checkpointEvery: context.checkpointEvery }),
        onDone: [
          { guard: ({ event }) => (event.output as TrainerOutput).reason === 'done', target: 'done' },
          { guard: ({ event }) => (event.output as TrainerOutput).reason === 'stopped', target: 'stopping' },
          { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: (event.output as TrainerOutput).error }) } }
        ],
        onError: recordErrorThen('failed')
      },
      initial: 'training',
      states: {
        training: {
          on: { 'trainer.reducing': 'reducing', 'peer.stop': 'draining' }
        },
        reducing: {
          on: { 'trainer.training': 'training', 'peer.stop': 'draining' }
        },
        /** Stop asked: the trainer ends its step and checkpoints, or the timeout gives up on it. */
        draining: {
          entry: sendTo('trainer', { type: 'trainer.stop' }),
          after: { drainTimeout: '#peer.stopping' }
        }
      }
    },
    /** The job's epochs are done; the peer keeps serving until stopped. */
    done: {
      on: { 'peer.stop': 'stopping' }
    },
    stopping: {
      invoke: { src: 'shutdown', onDone: 'stopped', onError: 'stopped' }
    },
    stopped: { type: 'final' },
    failed: {
      initial: 'cleaning',
      states: {
        cleaning: { invoke: { src: 'shutdown', onDone: 'halted', onError: 'halted' } },
        halted: { type: 'final' }
      }
    }
  }
})

export type PeerSnapshot = SnapshotFrom<typeof peerMachine>

/** The state name of the status contract: starting, joining, syncing, training, reducing, stopping, stopped, done, failed. */
export function peerStateName (snapshot: PeerSnapshot): string {
  const value = snapshot.value
  if (typeof value === 'string') return value
  if ('running' in value) return value.running === 'draining' ? 'stopping' : String(value.running)
  return Object.keys(value)[0]
}
