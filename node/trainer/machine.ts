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
import { assign, fromPromise, setup } from 'xstate'

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

const notProvided = (name: string) => fromPromise<never, unknown>(async () => {
  throw new Error(`trainer actor "${name}" was not provided`)
})

export const trainerMachine = setup({
  types: {
    context: {} as TrainerContext,
    events: {} as TrainerEvent,
    input: {} as { checkpointEvery: number, syncEvery?: number, startStep?: number },
    output: {} as TrainerOutput
  },
  actors: {
    /** Reports where training stands before the first step (after any restore). */
    prepare: notProvided('prepare') as unknown as ReturnType<typeof fromPromise<StepReport, void>>,
    compute: notProvided('compute') as unknown as ReturnType<typeof fromPromise<void, void>>,
    /** H = 1: averages this step's gradients with the swarm's (the `allReduce` hook); `resync: true` when the round went ahead without this peer. */
    reduceGradients: notProvided('reduceGradients') as unknown as ReturnType<typeof fromPromise<{ resync: boolean }, void>>,
    /** H > 1: averages the parameter deltas with the swarm and applies the outer step; `resync` as for reduceGradients. */
    averageDeltas: notProvided('averageDeltas') as unknown as ReturnType<typeof fromPromise<{ resync: boolean, report?: StepReport }, void>>,
    /** Fetches the swarm's state (this peer fell behind). */
    resync: notProvided('resync') as unknown as ReturnType<typeof fromPromise<StepReport, void>>,
    apply: notProvided('apply') as unknown as ReturnType<typeof fromPromise<StepReport, void>>,
    evaluate: notProvided('evaluate') as unknown as ReturnType<typeof fromPromise<void, void>>,
    checkpoint: notProvided('checkpoint') as unknown as ReturnType<typeof fromPromise<void, void>>
  },
  guards: {
    stopRequested: ({ context }) => context.stopRequested,
    finished: ({ context }) => context.report?.finished === true
  },
  actions: {
    requestStop: assign({ stopRequested: true }),
    recordError: assign({ error: (_, params: { error: unknown }) => String((params.error as Error)?.message ?? params.error) }),
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
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
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
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
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
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    resyncing: {
      invoke: {
        src: 'resync',
        onDone: { target: 'ready', actions: assign({ report: ({ event }) => event.output }) },
        // a failed fetch is retried from the loop (the next round finds this peer behind again)
        onError: { target: 'ready', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    applying: {
      invoke: {
        src: 'apply',
        onDone: { target: 'applied', actions: assign({ report: ({ event }) => event.output }) },
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
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
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
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
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    checkpointing: {
      invoke: {
        src: 'checkpoint',
        onDone: { target: 'ready', actions: assign({ lastCheckpointStep: ({ context }) => context.report?.step ?? 0 }) },
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    finishing: {
      invoke: {
        src: 'checkpoint',
        onDone: 'done',
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    stopping: {
      invoke: {
        src: 'checkpoint',
        onDone: 'stopped',
        onError: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
      }
    },
    done: { type: 'final', entry: assign({ outcome: 'done' as const }) },
    stopped: { type: 'final', entry: assign({ outcome: 'stopped' as const }) },
    failed: { type: 'final', entry: assign({ outcome: 'failed' as const }) }
  },
  output: ({ context }) => ({ reason: context.outcome, error: context.error })
})
