/**
 * One round's membership agreement and reduction, as a state machine. It runs only when a new group must be
 * agreed (node/rounds/rounds.ts: rounds in a stable group skip it):
 *
 *   announcing → waiting ─(proposal with me)→ reducing ─ok→ done
 *                  │  └─(I am proposer, all ready or collect timeout)→ proposing → reducing
 *                  ├─(proposal without me)→ excluded
 *                  ├─(collect timeout, the ready members are no quorum of the last group)→ partitioned
 *                  ├─(a member announced a later attempt)→ announcing (that attempt)
 *                  └─(no proposal in time)→ retrying → announcing (attempt + 1)
 *   reducing ─abort→ retrying;   any state ─round.cancel→ cancelled
 *
 * A proposal starts a new group epoch (one above the highest epoch announced); no member proposes, or takes
 * part in, a group that holds no quorum of the last group it agreed on (`hasQuorum`).
 *
 * Every member of round r uses the member list of one proposal: the ring
 * checks the list's hash with both neighbours and aborts on a mismatch, so no
 * member ever applies a sum computed over a different list (docs/rounds.md).
 */
import { and, assign, not, setup } from 'xstate'
import type { ProposeMessage, ReadyMessage } from '../../protocols/rounds/index.ts'
import { hasQuorum } from './group.ts'
import { notProvided } from '../common/machine.ts'

export interface ReadyInfo {
  peer: string
  samples: number
  weightsHash: string
  /** The attempt the member announced for (announcements for a later attempt wait in context until it starts). */
  attempt: number
  /** The epoch of the member's last group. */
  epoch: number
}

export interface RoundsContext {
  round: number
  attempt: number
  self: string
  weightsHash: string
  /** The epoch of this member's last group (0: none). */
  epoch: number
  /** The last group this member agreed on, without members that left cleanly: what a new group needs a quorum of (null: none). */
  base: string[] | null
  /** Members expected to take part (the live members of the manifest). */
  expected: string[]
  /** Peers left out of this round: lost or misbehaving in an earlier attempt, or excluded for a while. */
  excluded: string[]
  /** Ready announcements of the current attempt, by peer. */
  ready: Record<string, ReadyInfo>
  proposal: ProposeMessage | null
  collectTimedOut: boolean
  lastAbort: { reason: string, culprit?: string } | null
  aborts: number
  outcome: AgreementResult['outcome']
}

export type RoundsEvent =
  | { type: 'ready.received', from: string, message: ReadyMessage }
  | { type: 'proposal.received', from: string, message: ProposeMessage }
  | { type: 'members.changed', live: string[], excluded?: string[] }
  /** Wait longer for the members not ready yet: the collect (and proposal) timers start again. */
  | { type: 'collect.hold' }
  | { type: 'round.cancel' }

export interface RoundsInput {
  round: number
  /** Attempt to start at (a member that joins a round already being retried starts higher). */
  attempt?: number
  self: string
  weightsHash: string
  expected: string[]
  excluded?: string[]
  epoch?: number
  base?: string[] | null
}

/** What the machine's `allReduce` actor returns for one attempt: the ring summed, or why it did not (the machine retries). */
export type AttemptResult = { ok: true } | { ok: false, reason: string, culprit?: string }

/** How one round's agreement ended (the machine's output; `Rounds.round` turns it into a RoundOutcome). */
export interface AgreementResult {
  outcome: 'done' | 'excluded' | 'cancelled' | 'partitioned'
  round: number
  attempt: number
  members: string[]
  /** The epoch of the agreed group (that of the proposal). */
  epoch: number
  aborts: number
  /** The members this one heard ready for its last attempt (itself included): whom it reaches, as far as it can tell. */
  ready: string[]
}

/** The members ready for this attempt. */
export function readyNow (ctx: Pick<RoundsContext, 'ready' | 'attempt'>): Record<string, ReadyInfo> {
  return Object.fromEntries(Object.entries(ctx.ready).filter(([, r]) => r.attempt === ctx.attempt))
}

/** The proposer of an attempt: the lowest peer id among those known ready for it (and this peer). */
export function proposerOf (ctx: Pick<RoundsContext, 'self' | 'ready' | 'attempt'>): string {
  return [ctx.self, ...Object.keys(readyNow(ctx))].sort()[0]
}

/**
 * The ready members, in ring order, whose weights agree with the majority
 * (ties: the smaller hash), without the excluded ones.
 */
export function membersOf (ready: Record<string, ReadyInfo>, excluded: string[] = []): { members: string[], weightsHash: string } {
  const out = new Set(excluded)
  const candidates = Object.values(ready).filter(r => !out.has(r.peer))
  const counts = new Map<string, number>()
  for (const r of candidates) counts.set(r.weightsHash, (counts.get(r.weightsHash) ?? 0) + 1)
  const [weightsHash] = [...counts].sort(([ha, a], [hb, b]) => b - a || (ha < hb ? -1 : 1))[0] ?? ['']
  const members = candidates.filter(r => r.weightsHash === weightsHash).map(r => r.peer).sort()
  return { members, weightsHash }
}

/** The proposal this member makes now: the majority's ready members, as a new epoch above every one announced. */
export function proposalOf (ctx: Pick<RoundsContext, 'ready' | 'attempt' | 'excluded' | 'round' | 'epoch'>): ProposeMessage {
  const ready = readyNow(ctx)
  const { members, weightsHash } = membersOf(ready, ctx.excluded)
  const epoch = 1 + Math.max(ctx.epoch, ...Object.values(ready).map(r => r.epoch))
  return { t: 'propose', round: ctx.round, attempt: ctx.attempt, members, weightsHash, epoch }
}

export const roundsMachine = setup({
  types: {
    context: {} as RoundsContext,
    events: {} as RoundsEvent,
    input: {} as RoundsInput,
    output: {} as AgreementResult
  },
  actors: {
    announce: notProvided<void, { round: number, attempt: number }>('rounds', 'announce'),
    propose: notProvided<void, ProposeMessage>('rounds', 'propose'),
    allReduce: notProvided<AttemptResult, { round: number, attempt: number, members: string[], epoch: number }>('rounds', 'allReduce')
  },
  delays: {
    // the defaults; node/rounds/rounds.ts provides the configured ones (DEFAULT_COLLECT_TIMEOUT_MS and its grace)
    collectTimeout: 4000,
    proposalTimeout: 7000,
    backoff: ({ context }) => Math.min(2000, 50 * 2 ** Math.min(context.aborts, 6))
  },
  guards: {
    isCurrentReady: ({ context, event }) =>
      event.type === 'ready.received' && event.message.round === context.round && event.message.attempt >= context.attempt,
    /** Another member is already at a later attempt of this round (it retried sooner, or this member came late). */
    isLaterAttempt: ({ context, event }) =>
      event.type === 'ready.received' && event.message.round === context.round && event.message.attempt > context.attempt,
    isCurrentProposal: ({ context, event }) =>
      event.type === 'proposal.received' && event.message.round === context.round && event.message.attempt >= context.attempt,
    proposalIncludesMe: ({ context, event }) =>
      event.type === 'proposal.received' && event.message.members.includes(context.self),
    proposalHasQuorum: ({ context, event }) =>
      event.type === 'proposal.received' && hasQuorum(context.base, event.message.members),
    /**
     * This peer proposes when it is the lowest ready peer and every expected member is ready (or the wait is
     * over), and the members it would propose hold a quorum of its last group.
     */
    canPropose: ({ context }) => {
      const ready = readyNow(context)
      if (proposerOf(context) !== context.self || ready[context.self] === undefined) return false
      const allReady = context.expected.every(p => ready[p] !== undefined || context.excluded.includes(p))
      return (allReady || context.collectTimedOut) && hasQuorum(context.base, proposalOf(context).members)
    },
    /** The wait is over and the members ready now are no quorum of the last group: this side must not advance. */
    noQuorum: ({ context }) => context.collectTimedOut && !hasQuorum(context.base, proposalOf(context).members)
  },
  actions: {
    recordReady: assign({
      ready: ({ context, event }) => {
        if (event.type !== 'ready.received') return context.ready
        const { from, message } = event
        const known = context.ready[from]
        if (known !== undefined && known.attempt > message.attempt) return context.ready
        return { ...context.ready, [from]: { peer: from, samples: message.samples, weightsHash: message.weightsHash, attempt: message.attempt, epoch: message.epoch ?? 0 } }
      }
    }),
    recordSelfReady: assign({
      ready: ({ context }) => ({ ...context.ready, [context.self]: { peer: context.self, samples: 0, weightsHash: context.weightsHash, attempt: context.attempt, epoch: context.epoch } })
    }),
    recordProposal: assign({
      proposal: ({ event, context }) => event.type === 'proposal.received' ? event.message : context.proposal,
      attempt: ({ event, context }) => event.type === 'proposal.received' ? event.message.attempt : context.attempt
    }),
    recordMembers: assign({
      expected: ({ event, context }) => event.type === 'members.changed' ? event.live : context.expected,
      excluded: ({ event, context }) => event.type === 'members.changed' && event.excluded !== undefined ? event.excluded : context.excluded
    }),
    /** Catches up with a member at a later attempt: waiting out this attempt's timeouts would only delay both. */
    jumpToAttempt: assign({
      attempt: ({ context, event }) => event.type === 'ready.received' ? Math.max(context.attempt, event.message.attempt) : context.attempt,
      ready: ({ context, event }) => {
        const to = event.type === 'ready.received' ? event.message.attempt : context.attempt
        return Object.fromEntries(Object.entries(context.ready).filter(([, r]) => r.attempt >= to))
      },
      proposal: () => null,
      collectTimedOut: () => false
    }),
    nextAttempt: assign({
      attempt: ({ context }) => context.attempt + 1,
      // keep announcements already made for the next attempt (a member may retry sooner than this one)
      ready: ({ context }) => Object.fromEntries(Object.entries(context.ready).filter(([, r]) => r.attempt > context.attempt)),
      proposal: () => null,
      collectTimedOut: () => false
    })
  }
}).createMachine({
  id: 'rounds',
  context: ({ input }) => ({
    round: input.round,
    attempt: input.attempt ?? 0,
    self: input.self,
    weightsHash: input.weightsHash,
    epoch: input.epoch ?? 0,
    base: input.base ?? null,
    expected: input.expected,
    excluded: input.excluded ?? [],
    ready: {},
    proposal: null,
    collectTimedOut: false,
    lastAbort: null,
    aborts: 0,
    outcome: 'cancelled'
  }),
  initial: 'announcing',
  on: {
    'round.cancel': '.cancelled',
    'members.changed': { actions: 'recordMembers' },
    'ready.received': { guard: 'isCurrentReady', actions: 'recordReady' }
  },
  states: {
    announcing: {
      entry: 'recordSelfReady',
      invoke: {
        src: 'announce',
        input: ({ context }) => ({ round: context.round, attempt: context.attempt }),
        onDone: 'waiting',
        onError: 'retrying'
      },
      on: {
        'proposal.received': [
          { guard: and(['isCurrentProposal', 'proposalIncludesMe', 'proposalHasQuorum']), target: 'reducing', actions: 'recordProposal' },
          { guard: and(['isCurrentProposal', 'proposalIncludesMe', not('proposalHasQuorum')]), target: 'partitioned' },
          { guard: 'isCurrentProposal', target: 'excluded', actions: 'recordProposal' }
        ]
      }
    },
    waiting: {
      always: [
        { guard: 'canPropose', target: 'proposing' },
        { guard: 'noQuorum', target: 'partitioned' }
      ],
      on: {
        'collect.hold': { target: 'waiting', reenter: true, actions: assign({ collectTimedOut: false }) },
        'ready.received': [
          { guard: 'isLaterAttempt', target: 'announcing', actions: ['recordReady', 'jumpToAttempt'] },
          { guard: 'isCurrentReady', actions: 'recordReady' }
        ],
        'proposal.received': [
          { guard: and(['isCurrentProposal', 'proposalIncludesMe', 'proposalHasQuorum']), target: 'reducing', actions: 'recordProposal' },
          { guard: and(['isCurrentProposal', 'proposalIncludesMe', not('proposalHasQuorum')]), target: 'partitioned' },
          { guard: 'isCurrentProposal', target: 'excluded', actions: 'recordProposal' }
        ]
      },
      after: {
        collectTimeout: { actions: assign({ collectTimedOut: true }) },
        proposalTimeout: { target: 'retrying', actions: assign({ lastAbort: { reason: 'no proposal in time' }, aborts: ({ context }) => context.aborts + 1 }) }
      }
    },
    proposing: {
      // fixed on entry: readies that arrive while it is published must not change the list this member runs
      entry: assign({ proposal: ({ context }) => proposalOf(context) }),
      invoke: {
        src: 'propose',
        input: ({ context }) => context.proposal as ProposeMessage,
        onDone: 'reducing',
        onError: { target: 'retrying', actions: assign({ proposal: () => null }) }
      }
    },
    reducing: {
      always: { guard: ({ context }) => context.proposal !== null && !context.proposal.members.includes(context.self), target: 'excluded' },
      invoke: {
        src: 'allReduce',
        input: ({ context }) => ({ round: context.round, attempt: context.attempt, members: context.proposal?.members ?? [], epoch: context.proposal?.epoch ?? 0 }),
        onDone: [
          { guard: ({ event }) => event.output.ok, target: 'done' },
          {
            target: 'retrying',
            actions: assign({
              lastAbort: ({ event }) => event.output.ok ? null : { reason: event.output.reason, culprit: event.output.culprit },
              aborts: ({ context }) => context.aborts + 1
            })
          }
        ],
        onError: { target: 'retrying', actions: assign({ lastAbort: ({ event }) => ({ reason: String((event.error as Error)?.message ?? event.error) }), aborts: ({ context }) => context.aborts + 1 }) }
      }
    },
    retrying: {
      after: { backoff: { target: 'announcing', actions: 'nextAttempt' } }
    },
    done: { type: 'final', entry: assign({ outcome: 'done' as const }) },
    excluded: { type: 'final', entry: assign({ outcome: 'excluded' as const }) },
    partitioned: { type: 'final', entry: assign({ outcome: 'partitioned' as const }) },
    cancelled: { type: 'final', entry: assign({ outcome: 'cancelled' as const }) }
  },
  output: ({ context }) => {
    return {
      outcome: context.outcome,
      round: context.round,
      attempt: context.attempt,
      members: context.proposal?.members ?? [],
      epoch: context.proposal?.epoch ?? 0,
      aborts: context.aborts,
      ready: Object.keys(readyNow(context)).sort()
    }
  }
})
