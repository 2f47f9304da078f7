/**
 * `peer dataset import`: a CSV or JSON-lines file to a content-addressed data
 * set, in two streaming passes over the file, so memory does not grow with the
 * file's size (only with its row count, by about 9 bytes a row: the duplicate
 * table and one bit per row saying whether it was kept).
 *
 * Pass 1 (scan) reads every row and decides:
 * - missing values: a row whose label is missing is always dropped; with
 *   `missing: drop` so is a row missing any other (non-ignored) value; with
 *   `missing: fill` a missing value becomes the training rows' mean (numeric),
 *   their most frequent category (categorical) or '' (text);
 * - duplicates: a row equal to an earlier kept row in every non-ignored column
 *   is dropped (compared by a 64-bit hash of the values, see rowset.ts);
 * - which kept rows are held out for testing (a seeded draw per kept row);
 * - each column's type: the label; a --text column; numeric if every present
 *   value is a decimal number; otherwise categorical, unless it has more than
 *   `maxCategories` distinct values, in which case it is ignored (with a note
 *   saying to pass it as --text or --ignore);
 * - categories (sorted), classes (sorted, numerically if they are all numbers),
 *   fill values, and each numeric column's shift (its training mean).
 *
 * Pass 2 (write) reads the file again, cleans each kept row and appends it to
 * its shard: the test shard, or training shard k mod N for the k-th training
 * row (round robin, so shards differ by at most one row and a file sorted by
 * label still spreads every class over every shard). Each training shard's
 * partial statistics are computed as it is written, and the description's
 * statistics are their combination in shard order (stats.ts): exactly what
 * the swarm computes from the shards.
 *
 * Everything is written into a temporary directory beside the destination and
 * renamed into place at the end, so no reader ever sees half a data set; bad
 * input is found in pass 1, before anything is written at all.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../peer/datadir.ts'
import { mixSeed } from '../random.ts'
import { isValidBucketCount } from '../text.ts'
import { ShardSchema, ShardWriter } from './arrow.ts'
import type { WrittenShard } from './arrow.ts'
import { DATASET_FORMAT, DESCRIPTION_FILE, columnWidth, datasetId } from './description.ts'
import type { ColumnDescription, DatasetDescription, MissingMode, NormalizeMode, ShardFileDescription } from './description.ts'
import { DataInputError, EmptyInputError, MissingColumnError, UnusableInputError } from './errors.ts'
import { BitSet, HashSet64, rowHash } from './rowset.ts'
import { openSource } from './source.ts'
import type { InputFormat, RowSource } from './source.ts'
import { StatsAccumulator, StatsLayout, combineAll, statsToDescription } from './stats.ts'

export const DEFAULT_SHARDS = 8
export const MAX_SHARDS = 1024
export const DEFAULT_BUCKETS = 1 << 12
/** Non-numeric columns with more distinct values than this are not one-hot encoded (it would be wider than it is useful). */
export const DEFAULT_MAX_CATEGORIES = 1000
/** The label's values index a Uint8Array. */
export const MAX_CLASSES = 256
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
}

export interface ImportProgress {
  phase: 'scan' | 'write'
  bytes: number
  totalBytes: number
  rows: number
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
}

const NUMBER = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/

interface Profile {
  missing: number
  /** Every present value so far is a number. */
  numeric: boolean
  present: number
  trainN: number
  trainSum: number
  /** value → [training rows, all kept rows]; null once there are too many to be categories. */
  counts: Map<string, [number, number]> | null
}

/** Whether kept row k is held out for testing. */
function isTestRow (k: number, seed: number, fraction: number): boolean {
  return mixSeed(seed, k) / 4294967296 < fraction
}

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
  if (!Number.isInteger(shardsWanted) || shardsWanted < 1 || shardsWanted > MAX_SHARDS) throw new RangeError(`shards must be 1 … ${MAX_SHARDS}`)
  if (!isValidBucketCount(buckets)) throw new RangeError('buckets must be a power of two, 256 … 65536')
  if (!(testFraction >= 0 && testFraction <= 0.9)) throw new RangeError('testFraction must be in [0, 0.9]')
  let before: ReturnType<typeof statSync>
  try {
    before = statSync(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new DataInputError({ file: name, line: 1, column: 1 }, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`)
  }
  if (!before.isFile()) throw new DataInputError({ file: name, line: 1, column: 1 }, 'not a file')
  const totalBytes = before.size

  // ---- pass 1: scan ----
  const source = await openSource(path, { name, format: options.format })
  const columns = source.columns
  const indexOf = (col: string, role: string): number => {
    const i = columns.indexOf(col)
    if (i === -1) throw new MissingColumnError({ file: name, line: 1, column: col }, `no ${role} column "${col}" in the header (columns: ${columns.map(c => JSON.stringify(c)).join(', ')})`)
    return i
  }
  let labelAt: number
  let textAt: Set<number>
  let ignoreAt: Set<number>
  try {
    labelAt = indexOf(options.label, 'label')
    textAt = new Set((options.text ?? []).map(c => indexOf(c, '--text')))
    ignoreAt = new Set((options.ignore ?? []).map(c => indexOf(c, '--ignore')))
  } catch (err) {
    await source.rows.return(undefined)
    throw err
  }
  for (const i of [...textAt, ...ignoreAt]) {
    if (i === labelAt) {
      await source.rows.return(undefined)
      throw new MissingColumnError({ file: name, line: 1, column: columns[i] }, `"${columns[i]}" is the label; it cannot also be --text or --ignore`)
    }
  }
  const used = Uint32Array.from(columns.map((_, i) => i).filter(i => !ignoreAt.has(i)))
  const profiles: Profile[] = columns.map(() => ({ missing: 0, numeric: true, present: 0, trainN: 0, trainSum: 0, counts: new Map() }))
  const seen = new HashSet64()
  const keep = new BitSet()
  let rowsRead = 0
  let droppedMissing = 0
  let droppedDuplicates = 0
  let kept = 0
  let lastLine = 1
  const progress = throttle(options.onProgress)
  for await (const row of source.rows) {
    const values = row.values
    const r = rowsRead++
    lastLine = row.line
    let anyMissing = false
    for (let k = 0; k < used.length; k++) {
      const i = used[k]
      if (values[i] === null) {
        profiles[i].missing++
        anyMissing = true
      }
    }
    if (values[labelAt] === null || (missingMode === 'drop' && anyMissing)) {
      droppedMissing++
      continue
    }
    const [hi, lo] = rowHash(values, used)
    if (!seen.add(hi, lo)) {
      droppedDuplicates++
      continue
    }
    keep.set(r)
    const train = !isTestRow(kept++, seed, testFraction)
    for (let k = 0; k < used.length; k++) {
      const i = used[k]
      const v = values[i]
      if (v === null || textAt.has(i)) continue
      const p = profiles[i]
      p.present++
      if (p.numeric) {
        if (NUMBER.test(v)) {
          if (train) { p.trainN++; p.trainSum += Number(v) }
        } else p.numeric = false
      }
      if (p.counts !== null) {
        let c = p.counts.get(v)
        if (c === undefined) {
          if (p.counts.size >= (i === labelAt ? MAX_CLASSES : maxCategories)) {
            if (i === labelAt) {
              await source.rows.return(undefined)
              throw new UnusableInputError({ file: name, line: row.line, column: i + 1 }, `the label column "${columns[i]}" has more than ${MAX_CLASSES} distinct values: a classification label needs at most ${MAX_CLASSES} classes`)
            }
            p.counts = null
            continue
          }
          c = [0, 0]
          p.counts.set(v, c)
        }
        if (train) c[0]++
        c[1]++
      }
    }
    if ((r & 4095) === 0) progress({ phase: 'scan', bytes: source.bytesRead(), totalBytes, rows: rowsRead })
  }
  progress({ phase: 'scan', bytes: totalBytes, totalBytes, rows: rowsRead }, true)
  if (rowsRead === 0) throw new EmptyInputError({ file: name, line: lastLine + 1, column: 1 }, 'no data rows: the file has a header and nothing else')
  if (kept === 0) {
    throw new UnusableInputError({ file: name, line: lastLine, column: 1 }, `no rows left to write: all ${rowsRead} were dropped (${droppedMissing} with missing values, ${droppedDuplicates} duplicates)`)
  }

  // ---- decide the schema ----
  const described: ColumnDescription[] = columns.map((col, i) => {
    const p = profiles[i]
    if (ignoreAt.has(i)) return { name: col, type: 'ignored', missing: p.missing }
    if (i === labelAt) {
      const values = [...(p.counts as Map<string, [number, number]>).keys()]
      const categories = p.numeric ? values.sort((a, b) => Number(a) - Number(b) || compareCategories(a, b)) : values.sort(compareCategories)
      return { name: col, type: 'label', categories, missing: p.missing }
    }
    if (textAt.has(i)) return { name: col, type: 'text', missing: p.missing, ...(missingMode === 'fill' ? { fill: '' } : {}) }
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
  const label = described[labelAt]
  const classes = label.categories as string[]
  if (classes.length < 2) {
    throw new UnusableInputError({ file: name, line: lastLine, column: labelAt + 1 }, `the label column "${options.label}" has ${classes.length === 0 ? 'no values' : `only one class (${JSON.stringify(classes[0])})`} in the kept rows: a classifier needs at least two`)
  }

  // ---- pass 2: write ----
  const root = options.outDir
  mkdirSync(root, { recursive: true })
  removeStaleTemps(root)
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp)
  const writers: ShardWriter[] = []
  try {
    const trainCount = countTrainRows(kept, seed, testFraction)
    const shardCount = Math.max(1, Math.min(shardsWanted, trainCount))
    const shape = new ShardSchema(described)
    const layout = new StatsLayout({ columns: described, buckets })
    for (let s = 0; s < shardCount; s++) writers.push(new ShardWriter(join(tmp, `shard-${s}.tmp`), shape))
    const testWriter = new ShardWriter(join(tmp, 'test.tmp'), shape)
    writers.push(testWriter)
    const stats = Array.from({ length: shardCount }, () => new StatsAccumulator(layout))
    const lookups = described.map(c => c.categories !== undefined ? new Map(c.categories.map((v, i) => [v, i])) : null)
    const fillIndex = described.map((c, i) => c.type === 'categorical' && typeof c.fill === 'string' ? (lookups[i] as Map<string, number>).get(c.fill) ?? 0 : 0)

    const again = await openSource(path, { name, format: options.format })
    checkSameHeader(again, columns, name)
    let r = 0
    let k = 0
    let trainIndex = 0
    const clean = new Array<number | string | null>(described.length).fill(null)
    for await (const row of again.rows) {
      const i = r++
      if (!keep.has(i)) continue
      const test = isTestRow(k++, seed, testFraction)
      for (let c = 0; c < described.length; c++) {
        const col = described[c]
        const v = row.values[c]
        switch (col.type) {
          case 'numeric': clean[c] = v === null ? col.fill as number : Number(v); break
          case 'text': clean[c] = v ?? ''; break
          case 'categorical': clean[c] = v === null ? fillIndex[c] : (lookups[c] as Map<string, number>).get(v) ?? fillIndex[c]; break
          case 'label': clean[c] = (lookups[c] as Map<string, number>).get(v as string) as number; break
          default: clean[c] = null
        }
      }
      if (test) testWriter.append(clean)
      else {
        const s = trainIndex++ % shardCount
        writers[s].append(clean)
        stats[s].add(clean)
      }
      if ((i & 4095) === 0) progress({ phase: 'write', bytes: again.bytesRead(), totalBytes, rows: i })
    }
    if (r !== rowsRead || k !== kept) throw new Error(`${name} changed during the import (${rowsRead} rows in the first pass, ${r} in the second): import it again`)
    const after = statSync(path)
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) throw new Error(`${name} changed during the import: import it again`)
    progress({ phase: 'write', bytes: totalBytes, totalBytes, rows: rowsRead }, true)

    const written: WrittenShard[] = writers.map(w => w.finish())
    const files: ShardFileDescription[] = written.map((w, index) => {
      const file = `${w.sha256}.arrow`
      renameSync(w.path, join(tmp, file))
      return { index, file, sha256: w.sha256, bytes: w.bytes, rows: w.rows }
    })
    const testShard = { ...files[files.length - 1], index: 0 }
    const trainShards = files.slice(0, -1)
    const combined = combineAll(layout, stats.map(s => s.vector))
    const description: DatasetDescription = {
      format: DATASET_FORMAT,
      label: options.label,
      classes,
      columns: described,
      transform: { normalize, missing: missingMode, buckets, testFraction, splitSeed: seed },
      features: described.reduce((n, c) => n + (c.type === 'label' ? 0 : columnWidth(c, buckets)), 0),
      counts: { rowsRead, droppedMissing, droppedDuplicates, rowsWritten: kept, trainRows: trainIndex, testRows: testShard.rows },
      stats: statsToDescription(layout, combined),
      shards: trainShards,
      test: testShard
    }
    if (description.features === 0) throw new UnusableInputError({ file: name, line: 1, column: 1 }, 'no feature columns: every column other than the label is ignored')
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
      rowsRead,
      droppedMissing,
      droppedDuplicates,
      rowsWritten: kept,
      columns: described.map(c => ({ name: c.name, type: c.type, missing: c.missing, ...(c.categories !== undefined ? { categories: c.categories.length } : {}), ...(c.note !== undefined ? { note: c.note } : {}) })),
      shards: trainShards.length,
      datasetId: id,
      dir,
      trainRows: trainIndex,
      testRows: testShard.rows,
      features: description.features,
      classes,
      bytes: files.reduce((n, f) => n + f.bytes, 0),
      existing
    }
  } catch (err) {
    for (const w of writers) w.abort()
    rmSync(tmp, { recursive: true, force: true })
    throw err
  }
}

/** Work directories of imports whose process is gone (killed mid-write): never read, safe to remove. */
function removeStaleTemps (root: string): void {
  for (const name of readdirSync(root)) {
    const m = /^\.tmp-(\d+)-[0-9a-f]+$/.exec(name)
    if (m !== null && !pidAlive(Number(m[1]))) rmSync(join(root, name), { recursive: true, force: true })
  }
}

function countTrainRows (kept: number, seed: number, fraction: number): number {
  let n = 0
  for (let k = 0; k < kept; k++) if (!isTestRow(k, seed, fraction)) n++
  return n
}

function checkSameHeader (source: RowSource, columns: string[], name: string): void {
  if (source.columns.length !== columns.length || source.columns.some((c, i) => c !== columns[i])) throw new Error(`${name} changed during the import (its header differs): import it again`)
}

/** Progress callbacks at most every 100 ms (and always for the last one of a phase). */
function throttle (f: ((p: ImportProgress) => void) | undefined): (p: ImportProgress, force?: boolean) => void {
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
