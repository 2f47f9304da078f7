/**
 * `peer dataset import`: a CSV, JSON-lines or Parquet file to a
 * content-addressed data set. Two engines read and clean the file and agree
 * on every decision below, so a file imported by either gives the same data
 * set (the same id):
 *
 * - DuckDB (duckdb.ts), the default: the file is parsed, typed, hashed row
 *   by row and profiled by the engine, in parallel, under a memory limit, spilling to
 *   a temp dir inside the import's work dir when the data does not fit; only
 *   the duplicates and the training means (one pass over the row hashes and
 *   numbers, which also keeps the kept rows' values in memory where they fit)
 *   and the write pass (Arrow shards from those held values, or else from
 *   DuckDB's result chunks, as typed arrays; the text's document frequencies
 *   in a worker thread) run in JavaScript.
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
import { statSync } from 'node:fs'
import { isValidBucketCount } from '../text.ts'
import { columnWidth } from './description.ts'
import type { ColumnDescription, MissingMode, NormalizeMode } from './description.ts'
import { DataInputError, MissingColumnError, UnusableInputError } from './errors.ts'
import { formatOf } from './source.ts'
import type { InputFormat } from './source.ts'
import { isTestRow } from './engine.ts'
import { DEFAULT_SHARDS, DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DatasetWriter, WorkDir, checkSplitOptions, countTrainRows, publish, statInput } from './output.ts'
import type { Published } from './output.ts'
import type { EngineName, EngineReport, ImportProgress, Scan, ScanSettings } from './engine.ts'

export { MAX_CLASSES, NUMBER, fillIndices, isTestRow } from './engine.ts'
export type { EngineName, EngineReport, ImportProgress, Profile, Scan, ScanSettings } from './engine.ts'

export { DEFAULT_SHARDS, DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DatasetWriter, MAX_SHARDS, countTrainRows, describeJson, removeStaleTemps } from './output.ts'

export const DEFAULT_BUCKETS = 1 << 12
/** Non-numeric columns with more distinct values than this are not one-hot encoded (it would be wider than it is useful). */
export const DEFAULT_MAX_CATEGORIES = 1000

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
  checkSplitOptions(shardsWanted, testFraction)
  if (!isValidBucketCount(buckets)) throw new RangeError('buckets must be a power of two, 256 … 65536')
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) throw new RangeError('threads must be a positive integer')
  const before = statInput(path, name)

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
  const work = WorkDir.open(options.outDir)
  const tmp = work.path
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
        columns: (columns, _length, rows) => {
          out.addColumns(columns, rows, isTest)
          progress()
        }
      })
      if (out.rows !== scan.kept) throw new Error(`${name} changed during the import (${scan.kept} rows kept in the first pass, ${out.rows} in the second): import it again`)
      const after = statSync(path)
      if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) throw new Error(`${name} changed during the import: import it again`)
    } catch (err) {
      // (its files, and the document-frequency worker)
      out.abort()
      throw err
    }
    settings.progress({ phase: 'write', bytes: before.size, totalBytes: before.size, rows: scan.rowsRead }, true)
    const engine = await scan.engine()
    const counts = { rowsRead: scan.rowsRead, droppedMissing: scan.droppedMissing, droppedDuplicates: scan.droppedDuplicates, rowsWritten: scan.kept }
    await scan.close()
    scan = null

    const published = await publish(work, out, {
      label: options.label,
      classes,
      columns: described,
      transform: { normalize, missing: missingMode, buckets, testFraction, splitSeed: seed },
      features
    }, counts)
    return reportOf(published, engine)
  } catch (err) {
    if (scan !== null) await scan.close().catch(() => {})
    work.discard()
    throw err
  }
}


/** What an import says it did, from the published description. */
export function reportOf (p: Published, engine: EngineReport, columns?: ColumnReport[]): ImportReport {
  const d = p.description
  return {
    rowsRead: d.counts.rowsRead,
    droppedMissing: d.counts.droppedMissing,
    droppedDuplicates: d.counts.droppedDuplicates,
    rowsWritten: d.counts.rowsWritten,
    columns: columns ?? d.columns.map(c => ({ name: c.name, type: c.type, missing: c.missing, ...(c.categories !== undefined ? { categories: c.categories.length } : {}), ...(c.note !== undefined ? { note: c.note } : {}) })),
    shards: d.shards.length,
    datasetId: p.datasetId,
    dir: p.dir,
    trainRows: d.counts.trainRows,
    testRows: d.counts.testRows,
    features: d.features,
    classes: d.classes,
    bytes: p.bytes,
    existing: p.existing,
    engine
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
