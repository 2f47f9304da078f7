/**
 * One all-reduce round as a state machine:
 *
 *   running.connecting → running.reduceScatter (step 0 … N−2) → running.allGather (step N−1 … 2N−3)
 *     │                  └───────────── (a round that gathers whole vectors) ─┘   → running.committing → done
 *     └─ (any running state) peer.lost · frame.invalid · members.mismatch · peer.aborted ·
 *                            round.cancel · exchange.failed · its timeout → aborting → aborted
 *
 * The byte loop (`exchange`, an invoked callback actor) moves the bytes and reports `ring.connected`, one
 * `step.done` per step and `round.committed`; the machine decides. Each step restarts its timer
 * (`stepTimeout`); connecting has its own (`connectTimeout`). `committing` waits for the done tokens that say
 * every other member holds the sum as well: without it, a fault during the all-gather could leave the members
 * upstream of it with a sum and those downstream without one. `aborting` tells the successor why (`notifyAbort`, best effort, bounded by
 * `notifyTimeout`), so that a fault anywhere stops the whole ring in about one hop per member rather than one
 * timeout per member. Both actors are named by string; tests and the Ring `provide` the implementations.
 */
import { assign, fromCallback, fromPromise, setup } from 'xstate'
import type { AbortCode } from '../../protocols/allreduce/index.ts'

export interface RingInput {
  round: number
  attempt: number
  /** Members in the ring (N). */
  members: number
  /**
   * The round gathers whole vectors (layout.ts `gathers`): it goes from connecting straight to the all-gather,
   * whose N − 1 steps (N − 1 … 2N − 3) are then the whole data path.
   */
  gathers?: boolean
  connectTimeoutMs: number
  stepTimeoutMs: number
  notifyTimeoutMs: number
}

export interface RingContext extends RingInput {
  /** The step under way: 0 … N−2 reduce-scatter, N−1 … 2N−3 all-gather; 2N−2 once done. */
  step: number
  code: AbortCode | null
  /** The code of the first member to abort: this one's own `code`, or the one passed round in abort frames. */
  cause: AbortCode | null
  reason: string | null
  culprit: string | null
}

export type RingEvent =
  /** Hellos exchanged with both neighbours: same round, attempt, member list and vector length. */
  | { type: 'ring.connected' }
  /** Step `step` is done: its chunk fully received (and added) and fully sent. */
  | { type: 'step.done', step: number }
  /** The done tokens came round: every member holds the whole sum. */
  | { type: 'round.committed' }
  /** A neighbour's stream ended, was reset, or could not be opened. */
  | { type: 'peer.lost', peer: string, reason: string }
  /** The predecessor sent a frame that is malformed, out of place, or carries NaN/Inf. */
  | { type: 'frame.invalid', peer: string, reason: string }
  /** The predecessor's hello disagrees (member list, vector length, position): no one is to blame for sure. */
  | { type: 'members.mismatch', peer: string, reason: string }
  /**
   * The predecessor aborted the round (abort frame) or moved on to a later one. `cause` is the code of the
   * member that aborted first (carried by the abort frames), or `peer-aborted` for a move to a later round.
   */
  | { type: 'peer.aborted', peer: string, reason: string, cause: AbortCode, culprit?: string }
  /** The caller gave up on the round (its abort signal, or the ring stopping). */
  | { type: 'round.cancel', reason?: string, code?: 'cancelled' | 'stopped' }
  /** The byte loop failed in a way it did not expect (a bug). */
  | { type: 'exchange.failed', error: string }

export interface RingOutput {
  ok: boolean
  code: AbortCode | null
  cause: AbortCode | null
  reason: string | null
  culprit: string | null
  /** Steps completed. */
  steps: number
}

/** What `notifyAbort` is given: the abort to pass on. */
export interface AbortNotice {
  round: number
  attempt: number
  code: AbortCode
  reason: string
  culprit: string | null
}

export interface ExchangeInput {
  round: number
  attempt: number
}

const notProvidedCallback = fromCallback<RingEvent, ExchangeInput>(() => {
  throw new Error('ring actor "exchange" was not provided')
})
const notProvidedPromise = fromPromise<void, AbortNotice>(async () => {
  throw new Error('ring actor "notifyAbort" was not provided')
})

interface Failure { code: AbortCode, reason: string, culprit?: string | null, cause?: AbortCode }

/** Readable name of a state for status and logs: `connecting`, `reduce-scatter 1/2`, `all-gather 2/2`, `committing`, `done`, `aborted`. */
export function ringStateName (value: unknown, context: Pick<RingContext, 'step' | 'members'>): string {
  const n = context.members
  if (typeof value === 'object' && value !== null && 'running' in value) {
    const sub = (value as { running: string }).running
    if (sub === 'reduceScatter') return `reduce-scatter ${context.step + 1}/${n - 1}`
    if (sub === 'allGather') return `all-gather ${context.step - (n - 1) + 1}/${n - 1}`
    return sub
  }
  return String(value)
}

export const ringMachine = setup({
  types: {
    context: {} as RingContext,
    events: {} as RingEvent,
    input: {} as RingInput,
    output: {} as RingOutput
  },
  actors: {
    exchange: notProvidedCallback,
    notifyAbort: notProvidedPromise
  },
  delays: {
    connectTimeout: ({ context }) => context.connectTimeoutMs,
    stepTimeout: ({ context }) => context.stepTimeoutMs,
    notifyTimeout: ({ context }) => context.notifyTimeoutMs
  },
  guards: {
    alone: ({ context }) => context.members === 1,
    gathers: ({ context }) => context.gathers === true,
    currentStep: ({ context, event }) => event.type === 'step.done' && event.step === context.step,
    endsReduceScatter: ({ context, event }) => event.type === 'step.done' && event.step === context.step && context.step === context.members - 2,
    endsAllGather: ({ context, event }) => event.type === 'step.done' && event.step === context.step && context.step === 2 * context.members - 3
  },
  actions: {
    advance: assign({ step: ({ context }) => context.step + 1 }),
    skipReduceScatter: assign({ step: ({ context }) => context.members - 1 }),
    fail: assign((_, params: Failure) => ({ code: params.code, cause: params.cause ?? params.code, reason: params.reason, culprit: params.culprit ?? null }))
  }
}).createMachine({
  id: 'ring',
  context: ({ input }) => ({ ...input, step: 0, code: null, cause: null, reason: null, culprit: null }),
  initial: 'running',
  states: {
    running: {
      invoke: {
        id: 'exchange',
        src: 'exchange',
        input: ({ context }) => ({ round: context.round, attempt: context.attempt })
      },
      on: {
        'peer.lost': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: 'peer-lost', reason: `lost ${event.peer}: ${event.reason}`, culprit: event.peer }) }
        },
        'frame.invalid': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: 'invalid-frame', reason: `invalid frame from ${event.peer}: ${event.reason}`, culprit: event.peer }) }
        },
        'members.mismatch': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: 'mismatch', reason: `${event.peer} disagrees: ${event.reason}` }) }
        },
        'peer.aborted': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: 'peer-aborted', cause: event.cause, reason: `${event.peer} aborted: ${event.reason}`, culprit: event.culprit }) }
        },
        'round.cancel': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: event.code ?? 'cancelled', reason: event.reason ?? 'cancelled' }) }
        },
        'exchange.failed': {
          target: 'aborting',
          actions: { type: 'fail', params: ({ event }) => ({ code: 'internal', reason: `data path failed: ${event.error}` }) }
        }
      },
      initial: 'connecting',
      states: {
        connecting: {
          after: {
            connectTimeout: {
              target: '#ring.aborting',
              actions: { type: 'fail', params: ({ context }) => ({ code: 'timeout', reason: `neighbours not connected within ${context.connectTimeoutMs} ms` }) }
            }
          },
          on: {
            'ring.connected': [
              { guard: 'alone', target: '#ring.done' },
              { guard: 'gathers', target: 'allGather', actions: 'skipReduceScatter' },
              { target: 'reduceScatter' }
            ]
          }
        },
        reduceScatter: {
          after: {
            stepTimeout: {
              target: '#ring.aborting',
              actions: { type: 'fail', params: ({ context }) => ({ code: 'timeout', reason: `reduce-scatter step ${context.step + 1}/${context.members - 1} took longer than ${context.stepTimeoutMs} ms` }) }
            }
          },
          on: {
            'step.done': [
              { guard: 'endsReduceScatter', target: 'allGather', actions: 'advance' },
              { guard: 'currentStep', target: 'reduceScatter', reenter: true, actions: 'advance' }
            ]
          }
        },
        allGather: {
          after: {
            stepTimeout: {
              target: '#ring.aborting',
              actions: { type: 'fail', params: ({ context }) => ({ code: 'timeout', reason: `all-gather step ${context.step - context.members + 2}/${context.members - 1} took longer than ${context.stepTimeoutMs} ms` }) }
            }
          },
          on: {
            'step.done': [
              { guard: 'endsAllGather', target: 'committing', actions: 'advance' },
              { guard: 'currentStep', target: 'allGather', reenter: true, actions: 'advance' }
            ]
          }
        },
        committing: {
          after: {
            stepTimeout: {
              target: '#ring.aborting',
              actions: { type: 'fail', params: ({ context }) => ({ code: 'timeout', reason: `not every member confirmed the sum within ${context.stepTimeoutMs} ms` }) }
            }
          },
          on: {
            'round.committed': '#ring.done'
          }
        }
      }
    },
    aborting: {
      invoke: {
        id: 'notifyAbort',
        src: 'notifyAbort',
        input: ({ context }) => ({
          round: context.round,
          attempt: context.attempt,
          // Passed on unchanged: everyone downstream learns what went wrong first, not just that a neighbour gave up.
          code: context.cause ?? context.code ?? 'internal',
          reason: context.reason ?? '',
          culprit: context.culprit
        }),
        onDone: 'aborted',
        onError: 'aborted'
      },
      after: { notifyTimeout: 'aborted' }
    },
    aborted: { type: 'final' },
    done: { type: 'final' }
  },
  output: ({ context }) => ({
    ok: context.code === null,
    code: context.code,
    cause: context.cause,
    reason: context.reason,
    culprit: context.culprit,
    steps: context.step
  })
})
