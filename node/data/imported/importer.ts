/**
 * `peer dataset import`: a CSV, JSON-lines or Parquet file to a
 * content-addressed data set. Two engines read and clean the file and agree
 * on every decision below, so a file imported by either gives the same data
 * set (the same id):
 *
 * - DuckDB (duckdb.ts), the default: the file is parsed, typed, deduplicated
 *   and profiled by the engine, in parallel, under a memory limit, spilling to
 *   a temp dir inside the import's work dir when the data does not fit; only
 *   the write pass (text hashing, Arrow shards) runs in JavaScript, streaming
 *   DuckDB's result chunks.
 * - JavaScript (scan-js.ts): two streaming passes through csv-parse; used only
 *   when DuckDB's native binary cannot load (or with `engine: 'js'`). No
 *   Parquet.
 *
 * The decisions (the same for both):
 * - missing values: a row whose label is missing is always dropped; with
 *   `missing: drop` so is a row missing any other (non-ignored) value; with
 *   `missing: fill` a missing value becomes the training rows' mean (numeric),
 *   their most frequent category (categorical) or '' (text);
 * - duplicates: a row equal to an earlier kept row in every non-ignored column
 *   is dropped;
 * - which kept rows are held out for testing (a seeded draw per kept row);
 * - each column's type: the label; a --text column; numeric if every present
 *   value is a decimal number; otherwise categorical, unless it has more than
 *   `maxCategories` distinct values, in which case it is ignored (with a note
 *   saying to pass it as --text or --ignore);
 * - categories (sorted), classes (sorted, numerically if they are all numbers),
 *   fill values, and each numeric column's shift (its training mean, summed in
 *   file order so that it is the same bit for bit however it is computed).
 *
 * The write pass cleans each kept row and appends it to its shard: the test
 * shard, or training shard k mod N for the k-th training row (round robin, so
 * shards differ by at most one row and a file sorted by label still spreads
 * every class over every shard). Each training shard's partial statistics are
 * computed as it is written, and the description's statistics are their
 * combination in shard order (stats.ts): exactly what the swarm computes from
 * the shards.
 *
 * Everything is written into a temporary directory beside the destination and
 * renamed into place at the end, so no reader ever sees half a data set; bad
 * input is found before any shard is written, and leaves nothing behind.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../common/process.ts'
import { isValidBucketCount } from '../text.ts'
import { ShardSchema, ShardWriter } from './arrow.ts'
import type { CleanColumns } from './arrow.ts'
import type { WrittenShard } from './arrow.ts'
import { DATASET_FORMAT, DESCRIPTION_FILE, columnWidth, datasetId } from './description.ts'
import type { ColumnDescription, DatasetDescription, MissingMode, NormalizeMode, ShardFileDescription } from './description.ts'
import { DataInputError, MissingColumnError, UnusableInputError } from './errors.ts'
import { formatOf } from './source.ts'
import type { InputFormat } from './source.ts'
import { StatsAccumulator, StatsLayout, combineAll, statsToDescription } from './stats.ts'
import type { CleanRow } from './stats.ts'
import { isTestRow } from './engine.ts'
import type { EngineName, EngineReport, ImportProgress, Scan, ScanSettings } from './engine.ts'

export { MAX_CLASSES, NUMBER, fillIndices, isTestRow } from './engine.ts'
export type { EngineName, EngineReport, ImportProgress, Profile, Scan, ScanSettings } from './engine.ts'

export const DEFAULT_SHARDS = 8
export const MAX_SHARDS = 1024
export const DEFAULT_BUCKETS = 1 << 12
/** Non-numeric columns with more distinct values than this are not one-hot encoded (it would be wider than it is useful). */
export const DEFAULT_MAX_CATEGORIES = 1000
export const DEFAULT_TEST_FRACTION = 0.15
/** The same split seed as the built-in data sets: held-out rows never depend on a job. */
export const DEFAULT_SPLIT_SEED = 0x5eed

export interface ImportOptions {
  /** The label column. */
  label: string
  /** Columns to read as free text (hashed n-grams). */
  text?: string[]
  /** Columns to leave out (ids, timestamps). */
  ignore?: string[]
  /** Training shards (fewer if there are fewer training rows). */
  shards?: number
  normalize?: NormalizeMode
  missing?: MissingMode
  /** Hash buckets per text column (a power of two, 256 … 65536). */
  buckets?: number
  testFraction?: number
  seed?: number
  maxCategories?: number
  format?: InputFormat
  /** The datasets root to write `<id>/` under (`<data-dir>/datasets`). */
  outDir: string
  /** How errors name the file (default: the path as given). */
  name?: string
  onProgress?: (p: ImportProgress) => void
  /** `duckdb` (the default, when its native binary loads) or `js` (the streaming JavaScript reader: no Parquet). */
  engine?: EngineName
  /** DuckDB's memory limit (`SET memory_limit`: '512MB', '4GB'); beyond it the engine spills to the work dir. Default DEFAULT_MEMORY_LIMIT. */
  memoryLimit?: string
  /** DuckDB's worker threads (default: the CPUs this process may use). */
  threads?: number
}

export interface ColumnReport {
  name: string
  type: ColumnDescription['type']
  missing: number
  categories?: number
  note?: string
}

export interface ImportReport {
  rowsRead: number
  droppedMissing: number
  droppedDuplicates: number
  rowsWritten: number
  columns: ColumnReport[]
  /** Training shards written. */
  shards: number
  datasetId: string
  dir: string
  trainRows: number
  testRows: number
  features: number
  classes: string[]
  bytes: number
  /** The same data set was already there (same content, same id): nothing new was written. */
  existing: boolean
  engine: EngineReport
}

/** DuckDB's default memory limit: a few hundred MB of input are cleaned in memory; beyond, it spills to the work dir, so that the import (DuckDB and the JavaScript writer together) stays under 1 GB of RAM whatever the file's size. */
export const DEFAULT_MEMORY_LIMIT = '512MB'

function compareCategories (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

export async function importDataset (path: string, options: ImportOptions): Promise<ImportReport> {
  const name = options.name ?? path
  const shardsWanted = options.shards ?? DEFAULT_SHARDS
  const missingMode = options.missing ?? 'drop'
  const normalize = options.normalize ?? 'zscore'
  const buckets = options.buckets ?? DEFAULT_BUCKETS
  const testFraction = options.testFraction ?? DEFAULT_TEST_FRACTION
  const seed = options.seed ?? DEFAULT_SPLIT_SEED
  const maxCategories = options.maxCategories ?? DEFAULT_MAX_CATEGORIES
  const format = options.format ?? formatOf(path)
  if (!Number.isInteger(shardsWanted) || shardsWanted < 1 || shardsWanted > MAX_SHARDS) throw new RangeError(`shards must be 1 … ${MAX_SHARDS}`)
  if (!isValidBucketCount(buckets)) throw new RangeError('buckets must be a power of two, 256 … 65536')
  if (!(testFraction >= 0 && testFraction <= 0.9)) throw new RangeError('testFraction must be in [0, 0.9]')
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) throw new RangeError('threads must be a positive integer')
  let before: ReturnType<typeof statSync>
  try {
    before = statSync(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new DataInputError({ file: name, line: 1, column: 1 }, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`)
  }
  if (!before.isFile()) throw new DataInputError({ file: name, line: 1, column: 1 }, 'not a file')

  const [{ readColumns, scanWithJs }, duck] = await Promise.all([
    import('./scan-js.ts'),
    options.engine === 'js' ? null : import('./duckdb.ts').then(async m => await m.loadDuckDB())
  ])
  if (options.engine === 'duckdb' && duck === null) throw new Error('DuckDB (@duckdb/node-api) cannot load here: import with engine "js"')
  if (format === 'parquet' && duck === null) throw new DataInputError({ file: name, line: 1, column: 1 }, 'reading Parquet needs DuckDB (@duckdb/node-api), which cannot load here')

  // the header (CSV, JSON lines: read in JavaScript, with its checks; Parquet: the file's schema)
  const columns = format === 'parquet' && duck !== null ? await duck.parquetColumns(path, name) : await readColumns(path, name, format)
  const indexOf = (col: string, role: string): number => {
    const i = columns.indexOf(col)
    if (i === -1) throw new MissingColumnError({ file: name, line: 1, column: col }, `no ${role} column "${col}" in the header (columns: ${columns.map(c => JSON.stringify(c)).join(', ')})`)
    return i
  }
  const labelAt = indexOf(options.label, 'label')
  const textAt = new Set((options.text ?? []).map(c => indexOf(c, '--text')))
  const ignoreAt = new Set((options.ignore ?? []).map(c => indexOf(c, '--ignore')))
  for (const i of [...textAt, ...ignoreAt]) {
    if (i === labelAt) throw new MissingColumnError({ file: name, line: 1, column: columns[i] }, `"${columns[i]}" is the label; it cannot also be --text or --ignore`)
  }

  // the work dir: DuckDB spills there; shards are written there and renamed into place
  const root = options.outDir
  const rootExisted = existsSync(root)
  mkdirSync(root, { recursive: true })
  removeStaleTemps(root)
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp)
  const settings: ScanSettings = {
    path,
    name,
    format,
    columns,
    labelAt,
    textAt,
    ignoreAt,
    used: Uint32Array.from(columns.map((_, i) => i).filter(i => !ignoreAt.has(i))),
    missingMode,
    testFraction,
    seed,
    maxCategories,
    totalBytes: before.size,
    work: tmp,
    memoryLimit: options.memoryLimit ?? DEFAULT_MEMORY_LIMIT,
    threads: options.threads ?? 0,
    progress: throttle(options.onProgress)
  }
  let scan: Scan | null = null
  try {
    scan = duck !== null ? await duck.scanWithDuckDB(settings) : await scanWithJs(settings)
    const described = decideSchema(settings, scan)
    const label = described[labelAt]
    const classes = label.categories as string[]
    if (classes.length < 2) {
      throw new UnusableInputError({ file: name, line: await scan.lastLine(), column: labelAt + 1 }, `the label column "${options.label}" has ${classes.length === 0 ? 'no values' : `only one class (${JSON.stringify(classes[0])})`} in the kept rows: a classifier needs at least two`)
    }
    const features = described.reduce((n, c) => n + (c.type === 'label' ? 0 : columnWidth(c, buckets)), 0)
    if (features === 0) throw new UnusableInputError({ file: name, line: 1, column: 1 }, 'no feature columns: every column other than the label is ignored')

    // ---- write ----
    const out = new DatasetWriter(tmp, described, Math.max(1, Math.min(shardsWanted, countTrainRows(scan.kept, seed, testFraction))), buckets)
    try {
      const isTest = (k: number): boolean => isTestRow(k, seed, testFraction)
      const progress = (): void => settings.progress({ phase: 'write', bytes: Math.round(before.size * out.rows / scan!.kept), totalBytes: before.size, rows: out.rows })
      await scan.write(described, {
        row: clean => {
          out.add(clean, isTest(out.rows))
          if ((out.rows & 4095) === 0) progress()
        },
        columns: (columns, length) => {
          out.addColumns(columns, length, isTest)
          progress()
        }
      })
    } catch (err) {
      out.abort()
      throw err
    }
    if (out.rows !== scan.kept) throw new Error(`${name} changed during the import (${scan.kept} rows kept in the first pass, ${out.rows} in the second): import it again`)
    const after = statSync(path)
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) throw new Error(`${name} changed during the import: import it again`)
    settings.progress({ phase: 'write', bytes: before.size, totalBytes: before.size, rows: scan.rowsRead }, true)
    const engine = await scan.engine()
    const counts = { rowsRead: scan.rowsRead, droppedMissing: scan.droppedMissing, droppedDuplicates: scan.droppedDuplicates, rowsWritten: scan.kept }
    await scan.close()
    scan = null

    const { files, trainRows, stats, layout } = out.finish()
    const testShard = { ...files[files.length - 1], index: 0 }
    const trainShards = files.slice(0, -1)
    const description: DatasetDescription = {
      format: DATASET_FORMAT,
      label: options.label,
      classes,
      columns: described,
      transform: { normalize, missing: missingMode, buckets, testFraction, splitSeed: seed },
      features,
      counts: { ...counts, trainRows, testRows: testShard.rows },
      stats: statsToDescription(layout, stats),
      shards: trainShards,
      test: testShard
    }
    const id = datasetId(description)
    writeFileSync(join(tmp, DESCRIPTION_FILE), describeJson(description))
    const dir = join(root, id)
    let existing = false
    if (existsSync(dir)) {
      existing = true
      rmSync(tmp, { recursive: true, force: true })
    } else {
      renameSync(tmp, dir)
    }
    return {
      ...counts,
      columns: described.map(c => ({ name: c.name, type: c.type, missing: c.missing, ...(c.categories !== undefined ? { categories: c.categories.length } : {}), ...(c.note !== undefined ? { note: c.note } : {}) })),
      shards: trainShards.length,
      datasetId: id,
      dir,
      trainRows,
      testRows: testShard.rows,
      features,
      classes,
      bytes: files.reduce((n, f) => n + f.bytes, 0),
      existing,
      engine
    }
  } catch (err) {
    if (scan !== null) await scan.close().catch(() => {})
    rmSync(tmp, { recursive: true, force: true })
    if (!rootExisted) try { rmdirSync(root) } catch {}
    throw err
  }
}


/** Each column's description from the engine's profiles (the rules at the top of this file). */
function decideSchema (s: ScanSettings, scan: Scan): ColumnDescription[] {
  const { missingMode, maxCategories } = s
  return s.columns.map((col, i) => {
    const p = scan.profiles[i]
    if (s.ignoreAt.has(i)) return { name: col, type: 'ignored', missing: p.missing }
    if (i === s.labelAt) {
      const values = [...(p.counts as Map<string, [number, number]>).keys()]
      const categories = p.numeric ? values.sort((a, b) => Number(a) - Number(b) || compareCategories(a, b)) : values.sort(compareCategories)
      return { name: col, type: 'label', categories, missing: p.missing }
    }
    if (s.textAt.has(i)) return { name: col, type: 'text', missing: p.missing, ...(missingMode === 'fill' ? { fill: '' } : {}) }
    if (p.present === 0) return { name: col, type: 'ignored', missing: p.missing, note: 'no values' }
    if (p.numeric) {
      const mean = p.trainN > 0 ? p.trainSum / p.trainN : 0
      return { name: col, type: 'numeric', missing: p.missing, shift: mean, ...(missingMode === 'fill' ? { fill: mean } : {}) }
    }
    if (p.counts === null) {
      return { name: col, type: 'ignored', missing: p.missing, note: `more than ${maxCategories} distinct values: pass --text ${col} to read it as text, or --ignore ${col}` }
    }
    const categories = [...p.counts.keys()].sort(compareCategories)
    let mode = categories[0]
    let best = -1
    for (const c of categories) {
      const n = (p.counts.get(c) as [number, number])[0]
      if (n > best) { best = n; mode = c }
    }
    return { name: col, type: 'categorical', categories, missing: p.missing, ...(missingMode === 'fill' ? { fill: mode } : {}) }
  })
}

/** The shard files of one import, written as rows arrive: round robin over the training shards, and the test shard. */
export class DatasetWriter {
  readonly layout: StatsLayout
  private readonly writers: ShardWriter[] = []
  private readonly test: ShardWriter
  private readonly stats: StatsAccumulator[]
  private readonly shardCount: number
  private trainIndex = 0
  rows = 0

  constructor (dir: string, described: ColumnDescription[], shardCount: number, buckets: number) {
    const shape = new ShardSchema(described)
    this.layout = new StatsLayout({ columns: described, buckets })
    this.shardCount = shardCount
    this.stats = Array.from({ length: shardCount }, () => new StatsAccumulator(this.layout))
    try {
      for (let s = 0; s < shardCount; s++) this.writers.push(new ShardWriter(join(dir, `shard-${s}.tmp`), shape, this.stats[s]))
      this.test = new ShardWriter(join(dir, 'test.tmp'), shape)
    } catch (err) {
      this.abort()
      throw err
    }
    this.writers.push(this.test)
  }

  add (clean: CleanRow, test: boolean): void {
    this.rows++
    this.next(test).append(clean)
  }

  /** The next `length` rows, as columns; `isTest(k)` says whether the k-th row of the data set is a test row. */
  addColumns (columns: CleanColumns, length: number, isTest: (k: number) => boolean): void {
    for (let i = 0; i < length; i++) this.next(isTest(this.rows++)).appendFrom(columns, i)
  }

  private next (test: boolean): ShardWriter {
    return test ? this.test : this.writers[this.trainIndex++ % this.shardCount]
  }

  /** Finishes every file and renames it to `<sha256>.arrow`; the test shard comes last. */
  finish (): { files: ShardFileDescription[], trainRows: number, stats: Float64Array, layout: StatsLayout } {
    const written: WrittenShard[] = this.writers.map(w => w.finish())
    const files = written.map((w, index) => {
      const file = `${w.sha256}.arrow`
      renameSync(w.path, join(w.path, '..', file))
      return { index, file, sha256: w.sha256, bytes: w.bytes, rows: w.rows }
    })
    return { files, trainRows: this.trainIndex, stats: combineAll(this.layout, this.stats.map(s => s.vector)), layout: this.layout }
  }

  abort (): void {
    for (const w of this.writers) w.abort()
  }
}

/** Work directories of imports whose process is gone (killed mid-write): never read, safe to remove. */
export function removeStaleTemps (root: string): void {
  for (const name of readdirSync(root)) {
    const m = /^\.tmp-(\d+)-[0-9a-f]+$/.exec(name)
    if (m !== null && !pidAlive(Number(m[1]))) rmSync(join(root, name), { recursive: true, force: true })
  }
}

export function countTrainRows (kept: number, seed: number, fraction: number): number {
  let n = 0
  for (let k = 0; k < kept; k++) if (!isTestRow(k, seed, fraction)) n++
  return n
}

/** Progress callbacks at most every 100 ms (and always for the last one of a phase). */
export function throttle (f: ((p: ImportProgress) => void) | undefined): (p: ImportProgress, force?: boolean) => void {
  let last = 0
  return (p, force = false) => {
    if (f === undefined) return
    const now = Date.now()
    if (!force && now - last < 100) return
    last = now
    f(p)
  }
}

/** The description as readable JSON: indented, but arrays of numbers on one line (the document frequencies are long). */
export function describeJson (d: DatasetDescription): string {
  return `${JSON.stringify(d, null, 2).replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, inner: string) => `[${inner.replace(/\s+/g, '')}]`)}\n`
}
