/**
 * The manifest as a last-writer-wins map: each key holds the value of the
 * write with the greatest hybrid logical clock. Merging is commutative,
 * associative and idempotent, so replicas converge whatever the order in
 * which they see writes, and however often.
 */
import { compareHlc } from './hlc.ts'
import type { Hlc } from './hlc.ts'

export interface Entry {
  key: string
  /** null marks a deleted key (a tombstone, kept so that the delete wins over older writes). */
  value: unknown
  clock: Hlc
}

/** The winner of two writes to the same key. */
export function lww (a: Entry | undefined, b: Entry): Entry {
  if (a === undefined) return b
  return compareHlc(b.clock, a.clock) > 0 ? b : a
}

export class LwwMap {
  private readonly map = new Map<string, Entry>()

  get size (): number {
    return this.map.size
  }

  entry (key: string): Entry | undefined {
    return this.map.get(key)
  }

  /** The value at `key`, or undefined when absent or deleted. */
  get<T = unknown> (key: string): T | undefined {
    const e = this.map.get(key)
    return e === undefined || e.value === null ? undefined : e.value as T
  }

  /** Every entry (tombstones included), optionally under a key prefix. */
  entries (prefix = ''): Entry[] {
    const out: Entry[] = []
    for (const e of this.map.values()) if (e.key.startsWith(prefix)) out.push(e)
    return out
  }

  /** Live (non-deleted) values under a prefix, keyed by the rest of the key. */
  values<T = unknown> (prefix: string): Map<string, T> {
    const out = new Map<string, T>()
    for (const e of this.map.values()) {
      if (e.value !== null && e.key.startsWith(prefix)) out.set(e.key.slice(prefix.length), e.value as T)
    }
    return out
  }

  /** Merges entries in; returns those that won (changed this replica). */
  merge (entries: Iterable<Entry>): Entry[] {
    const changed: Entry[] = []
    for (const e of entries) {
      const current = this.map.get(e.key)
      if (lww(current, e) === e && current !== e && (current === undefined || compareHlc(e.clock, current.clock) !== 0)) {
        this.map.set(e.key, e)
        changed.push(e)
      }
    }
    return changed
  }

  /** A digest of the whole map (keys and clocks), equal on replicas that hold the same writes. */
  digest (): string {
    return [...this.map.values()]
      .map(e => `${e.key}@${e.clock.wall}.${e.clock.counter}.${e.clock.peer}`)
      .sort()
      .join('|')
  }
}
