/**
 * The trainer's protocol as a state machine. One pass of the loop:
 *
 *   H = 1:  ready → computing → reducing → applying → checking → (evaluating) → (checkpointing) → ready
 *   H > 1:  ready → computing → applying ─(every H steps)→ averaging → checking → …
 *   reducing/averaging ─ left out of the round ─→ resyncing (fetch the swarm's state) → ready
 *
 * `reducing` (actor `reduceGradients`) and `averaging` (actor `averageDeltas`)
 * are where a swarm sums its members' updates, through the `allReduce` hook
 * (node/trainer/index.ts: trainer → peer → rounds → ring); alone, a peer
 * reduces over itself. A stop request is honoured at the loop boundary
 * (`ready`), after a final checkpoint. The work of each state is an invoked
 * actor named by string, so tests can `provide` their own.
 */
import { assign, setup } from 'xstate'
import { errorText, notProvided, recordErrorThen } from '../common/machine.ts'

/** What the applying step reports, for the guards that pick the next state. */
export interface StepReport {
  step: number
  epoch: number
  /** The batch just applied was the last of an epoch. */
  epochEnded: boolean
  /** Every epoch of the job is done. */
  finished: boolean
  /** H > 1: this step ends a local period; the deltas are averaged now. */
  syncDue?: boolean
  /** The job's H (reported by `prepare`, which runs once the job is known). */
  syncEvery?: number
}

export interface TrainerContext {
  checkpointEvery: number
  /** H: 1 reduces gradients before every step; H > 1 averages deltas after every H local steps. */
  syncEvery: number
  lastCheckpointStep: number
  report: StepReport | null
  stopRequested: boolean
  error: string | null
  outcome: TrainerOutput['reason']
}

export type TrainerEvent =
  | { type: 'trainer.stop' }

export interface TrainerOutput {
  reason: 'done' | 'stopped' | 'failed'
  error: string | null
}

export const trainerMachine = setup({
  types: {
    context: {} as TrainerContext,
    events: {} as TrainerEvent,
    input: {} as { checkpointEvery: number, syncEvery?: number, startStep?: number },
    output: {} as TrainerOutput
  },
  actors: {
    /** Reports where training stands before the first step (after any restore). */
    prepare: notProvided<StepReport>('trainer', 'prepare'),
    compute: notProvided<void>('trainer', 'compute'),
    /** H = 1: averages this step's gradients with the swarm's (the `allReduce` hook); `resync: true` when the round went ahead without this peer. */
    reduceGradients: notProvided<{ resync: boolean }>('trainer', 'reduceGradients'),
    /** H > 1: averages the parameter deltas with the swarm and applies the outer step; `resync` as for reduceGradients. */
    averageDeltas: notProvided<{ resync: boolean, report?: StepReport }>('trainer', 'averageDeltas'),
    /** Fetches the swarm's state (this peer fell behind). */
    resync: notProvided<StepReport>('trainer', 'resync'),
    apply: notProvided<StepReport>('trainer', 'apply'),
    evaluate: notProvided<void>('trainer', 'evaluate'),
    checkpoint: notProvided<void>('trainer', 'checkpoint')
  },
  guards: {
    stopRequested: ({ context }) => context.stopRequested,
    finished: ({ context }) => context.report?.finished === true
  },
  actions: {
    requestStop: assign({ stopRequested: true }),
    recordError: assign({ error: (_, params: { error: unknown }) => errorText(params.error) }),
    // The root actor mirrors reducing/training; a trainer run on its own (tests, benchmarks) has no parent to tell.
    notifyReducing: ({ self }) => { self._parent?.send({ type: 'trainer.reducing' }) },
    notifyTraining: ({ self }) => { self._parent?.send({ type: 'trainer.training' }) }
  }
}).createMachine({
  id: 'trainer',
  context: ({ input }) => ({
    checkpointEvery: input.checkpointEvery,
    syncEvery: input.syncEvery ?? 1,
    lastCheckpointStep: input.startStep ?? 0,
    report: null,
    stopRequested: false,
    error: null,
    outcome: 'failed'
  }),
  initial: 'preparing',
  on: {
    'trainer.stop': { actions: 'requestStop' }
  },
  states: {
    preparing: {
      invoke: {
        src: 'prepare',
        onDone: {
          target: 'ready',
          actions: assign({
            report: ({ event }) => event.output,
            lastCheckpointStep: ({ event }) => event.output.step,
            syncEvery: ({ context, event }) => event.output.syncEvery ?? context.syncEvery
          })
        },
        onError: recordErrorThen('failed')
      }
    },
    ready: {
      always: [
        { guard: 'stopRequested', target: 'stopping' },
        { guard: 'finished', target: 'finishing' },
        { target: 'computing' }
      ]
    },
    computing: {
      invoke: {
        src: 'compute',
        onDone: [
          { guard: ({ context }) => context.syncEvery === 1, target: 'reducing' },
          { target: 'applying' }
        ],
        onError: recordErrorThen('failed')
      }
    },
    reducing: {
      entry: 'notifyReducing',
      exit: 'notifyTraining',
      invoke: {
        src: 'reduceGradients',
        onDone: [
          { guard: ({ event }) => event.output.resync, target: 'resyncing' },
          { target: 'applying' }
        ],
        onError: recordErrorThen('failed')
      }
    },
    resyncing: {
      invoke: {
        src: 'resync',
        onDone: { target: 'ready', actions: assign({ report: ({ event }) => event.output }) },
        // a failed fetch is retried from the loop (the next round finds this peer behind again)
        onError: recordErrorThen('ready')
      }
    },
    applying: {
      invoke: {
        src: 'apply',
        onDone: { target: 'applied', actions: assign({ report: ({ event }) => event.output }) },
        onError: recordErrorThen('failed')
      }
    },
    applied: {
      always: [
        { guard: ({ context }) => context.report?.syncDue === true, target: 'averaging' },
        { target: 'checking' }
      ]
    },
    averaging: {
      entry: 'notifyReducing',
      exit: 'notifyTraining',
      invoke: {
        src: 'averageDeltas',
        onDone: [
          { guard: ({ event }) => event.output.resync, target: 'resyncing' },
          { target: 'checking', actions: assign({ report: ({ context, event }) => event.output.report ?? context.report }) }
        ],
        onError: recordErrorThen('failed')
      }
    },
    /** After an update: evaluate at an epoch's end, checkpoint when due. */
    checking: {
      always: [
        { guard: ({ context }) => context.report?.epochEnded === true, target: 'evaluating' },
        { guard: ({ context }) => context.report !== null && context.report.step - context.lastCheckpointStep >= context.checkpointEvery, target: 'checkpointing' },
        { target: 'ready' }
      ]
    },
    evaluating: {
      invoke: {
        src: 'evaluate',
        onDone: 'checkpointing',
        onError: recordErrorThen('failed')
      }
    },
    checkpointing: {
      invoke: {
        src: 'checkpoint',
        onDone: { target: 'ready', actions: assign({ lastCheckpointStep: ({ context }) => context.report?.step ?? 0 }) },
        onError: recordErrorThen('failed')
      }
    },
    finishing: {
      invoke: {
        src: 'checkpoint',
        onDone: 'done',
        onError: recordErrorThen('failed')
      }
    },
    stopping: {
      invoke: {
        src: 'checkpoint',
        onDone: 'stopped',
        onError: recordErrorThen('failed')
      }
    },
    done: { type: 'final', entry: assign({ outcome: 'done' as const }) },
    stopped: { type: 'final', entry: assign({ outcome: 'stopped' as const }) },
    failed: { type: 'final', entry: assign({ outcome: 'failed' as const }) }
  },
  output: ({ context }) => ({ reason: context.outcome, error: context.error })
})
