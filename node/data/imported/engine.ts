/**
 * What the importer and its two engines (DuckDB's, duckdb.ts, and the
 * JavaScript one, scan-js.ts) share: the settings an engine is given, what its
 * scan returns, and the rules both apply. A leaf of the importer, so that
 * neither engine imports importer.ts, which imports them.
 */
import { mixSeed } from '../random.ts'
import type { ColumnDescription, MissingMode } from './description.ts'
import type { InputFormat } from './source.ts'
import type { CleanColumns } from './arrow.ts'
import type { CleanRow } from './stats.ts'

/** The label's values index a Uint8Array. */
export const MAX_CLASSES = 256
export type EngineName = 'duckdb' | 'js'

export interface ImportProgress {
  phase: 'scan' | 'write'
  bytes: number
  totalBytes: number
  rows: number
}

/** Which engine cleaned the file, and with what limits (DuckDB's settings as it reports them, not as asked). */
export interface EngineReport {
  name: EngineName
  version?: string
  memoryLimit?: string
  threads?: number
  /** Where the engine spills (inside the import's work dir, removed with it). */
  tempDirectory?: string
  /** The most bytes the engine held in temporary files at once (0: everything fit in memory). */
  spilledBytes?: number
  /** Where the time went: read (parse, missing values), dedupe, profile (types, categories, means), write (the shards). */
  phases?: PhaseReport[]
}

export interface PhaseReport {
  name: string
  seconds: number
  /** CPU time of the process's threads (DuckDB's workers included) in the phase. */
  cpuSeconds: number
  /** The process's peak resident memory at the end of the phase (the most it held up to then). */
  peakRssBytes: number
}

/** What both engines are given: the options resolved, the columns resolved. */
export interface ScanSettings {
  path: string
  name: string
  format: InputFormat
  columns: string[]
  labelAt: number
  textAt: ReadonlySet<number>
  ignoreAt: ReadonlySet<number>
  /** Non-ignored columns, in order: what makes two rows duplicates. */
  used: Uint32Array
  missingMode: MissingMode
  testFraction: number
  seed: number
  maxCategories: number
  totalBytes: number
  /** The import's work dir (inside the datasets root; removed at the end). */
  work: string
  memoryLimit: string
  threads: number
  progress: (p: ImportProgress, force?: boolean) => void
}

/** What an engine learnt about one column from the kept rows (`missing` from all rows read). */
export interface Profile {
  missing: number
  /** Every present value in the kept rows is a number. */
  numeric: boolean
  /** Present values in the kept rows. */
  present: number
  /** Numeric columns: present values in the training rows, and their sum in file order. */
  trainN: number
  trainSum: number
  /** value → [training rows, all kept rows] (the training rows only where they decide a fill value: the DuckDB engine leaves them 0 with `--missing drop`); null once there are too many to be categories (or not asked for). */
  counts: Map<string, [number, number]> | null
}

/** Where an engine's write pass sends the kept rows, in order. */
export interface CleanSink {
  /** The next kept row (see CleanRow; read before the next call). */
  row: (clean: CleanRow) => void
  /** The kept rows among `length` rows of columns (see CleanColumns; read before the next call): those at `rows`, in order. */
  columns: (columns: CleanColumns, length: number, rows: Uint32Array) => void
}

/** One engine's pass over the file, done; `write` streams the kept rows again, cleaned. */
export interface Scan {
  profiles: Profile[]
  rowsRead: number
  droppedMissing: number
  droppedDuplicates: number
  kept: number
  /** The line the last data row starts on (for error messages; may read the file again). */
  lastLine: () => Promise<number>
  /** Every kept row in order, cleaned per `described`, to `sink` (a row or a block of rows at a time). */
  write: (described: ColumnDescription[], sink: CleanSink) => Promise<void>
  engine: () => Promise<EngineReport>
  close: () => Promise<void>
}

export const NUMBER = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/

/** Whether kept row k is held out for testing. */
export function isTestRow (k: number, seed: number, fraction: number): boolean {
  return mixSeed(seed, k) / 4294967296 < fraction
}

/** The fill index of each categorical column (the position of its fill value; 0 without one). */
export function fillIndices (described: readonly ColumnDescription[]): number[] {
  return described.map(c => c.type === 'categorical' && typeof c.fill === 'string' ? Math.max(0, (c.categories ?? []).indexOf(c.fill)) : 0)
}
