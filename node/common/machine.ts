/**
 * What the state machines share (node/peer, node/trainer, node/rounds): the stand-in for an invoked actor its
 * owner must provide, and the transition that records an invoked actor's error. See docs/architecture.md.
 */
import { fromPromise } from 'xstate'

/**
 * An invoked promise actor that `machine` names but whose owner provides it (`machine.provide({ actors })`);
 * run as it is, it fails with an error naming the actor.
 */
export function notProvided<O = void, I = void> (machine: string, name: string): ReturnType<typeof fromPromise<O, I>> {
  return fromPromise<O, I>(async () => {
    throw new Error(`${machine} actor "${name}" was not provided`)
  })
}

/** The message of what an actor threw (or reported as its error). */
export function errorText (error: unknown): string {
  return String((error as Error)?.message ?? error)
}

/**
 * An invoked actor's `onError`: records the error (the machine's `recordError` action, given `{ error }`) and
 * goes to `target`.
 */
export function recordErrorThen<T extends string> (target: T): { target: T, actions: { type: 'recordError', params: (args: { event: { error: unknown } }) => { error: unknown } } } {
  return { target, actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } }
}
