/**
 * `peer dataset import FILE.txt --lm [--context N]`: a UTF-8 text file to a
 * language-model data set, stored as an ordinary imported data set so that
 * sharding, transfer, statistics and streaming need nothing new.
 *
 * The text's bytes are the tokens. Window k holds the bytes
 * `[k·N, k·N + N]` (N + 1 of them, see ../lm.ts); a seeded draw per window
 * (the importer's `isTestRow`) holds some out for testing, and the training
 * windows go round robin to the shards. Each window is a row with the columns
 * `next` (the label: the last byte, one of the 256 classes "0" … "255") and
 * `t0` … `tN` (numeric, not normalised: the byte values), so the feature row
 * is the window itself and the class count is 256. The description's `lm`
 * field says so (`{ context: N, tokens: 'bytes' }`).
 *
 * Bounds: the file is read whole, at most MAX_LM_TEXT_BYTES; bytes that are
 * not UTF-8 are refused with the line and column of the first bad one.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import { isUtf8 } from 'node:buffer'
import { join } from 'node:path'
import { LM_CLASSES } from '../lm.ts'
import { DATASET_FORMAT, DESCRIPTION_FILE, datasetId } from './description.ts'
import type { ColumnDescription, DatasetDescription } from './description.ts'
import { DataInputError, EmptyInputError, EncodingError } from './errors.ts'
import { DEFAULT_BUCKETS, DEFAULT_SHARDS, DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DatasetWriter, MAX_SHARDS, countTrainRows, describeJson, isTestRow, removeStaleTemps } from './importer.ts'
import type { ImportReport } from './importer.ts'
import { statsToDescription } from './stats.ts'

/** The largest text file imported: its windows as float32 features take about 4 × (1 + 1/context) times this in memory. */
export const MAX_LM_TEXT_BYTES = 256 * 1024 * 1024
export const DEFAULT_LM_CONTEXT = 64
export const MAX_LM_CONTEXT = 8192
/** The label column: the window's last byte. */
const LABEL = 'next'

export interface LmImportOptions {
  /** Tokens the model sees at once (a row holds context + 1). */
  context?: number
  shards?: number
  testFraction?: number
  seed?: number
  /** The datasets root to write `<id>/` under (`<data-dir>/datasets`). */
  outDir: string
  /** How errors name the file (default: the path as given). */
  name?: string
}

export async function importLmText (path: string, options: LmImportOptions): Promise<ImportReport> {
  const name = options.name ?? path
  const context = options.context ?? DEFAULT_LM_CONTEXT
  const shardsWanted = options.shards ?? DEFAULT_SHARDS
  const testFraction = options.testFraction ?? DEFAULT_TEST_FRACTION
  const seed = options.seed ?? DEFAULT_SPLIT_SEED
  if (!Number.isInteger(context) || context < 1 || context > MAX_LM_CONTEXT) throw new RangeError(`context must be 1 … ${MAX_LM_CONTEXT}`)
  if (!Number.isInteger(shardsWanted) || shardsWanted < 1 || shardsWanted > MAX_SHARDS) throw new RangeError(`shards must be 1 … ${MAX_SHARDS}`)
  if (!(testFraction >= 0 && testFraction <= 0.9)) throw new RangeError('testFraction must be in [0, 0.9]')
  let size: number
  try {
    const st = statSync(path)
    if (!st.isFile()) throw new DataInputError({ file: name, line: 1, column: 1 }, 'not a file')
    size = st.size
  } catch (err) {
    if (err instanceof DataInputError) throw err
    const e = err as NodeJS.ErrnoException
    throw new DataInputError({ file: name, line: 1, column: 1 }, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`)
  }
  if (size > MAX_LM_TEXT_BYTES) throw new DataInputError({ file: name, line: 1, column: 1 }, `${size} bytes: larger than the ${MAX_LM_TEXT_BYTES / 1024 ** 2} MiB a language-model import reads`)
  const text = readFileSync(path)
  if (!isUtf8(text)) {
    const at = firstInvalidUtf8(text)
    const { line, column } = lineAndColumn(text, at)
    throw new EncodingError({ file: name, line, column }, `byte 0x${text[at].toString(16).padStart(2, '0')} at offset ${at} is not UTF-8 (the text must be UTF-8)`)
  }
  const windows = text.length > context ? Math.floor((text.length - 1) / context) : 0
  if (windows === 0) throw new EmptyInputError({ file: name, line: 1, column: 1 }, `${text.length} bytes: too short for one window of ${context + 1} bytes (use a smaller --context)`)
  const trainWindows = countTrainRows(windows, seed, testFraction)
  if (trainWindows === 0) throw new EmptyInputError({ file: name, line: 1, column: 1 }, `all ${windows} windows fell into the test split: use a longer text or a smaller --context`)

  const columns: ColumnDescription[] = [
    { name: LABEL, type: 'label', categories: Array.from({ length: LM_CLASSES }, (_, i) => String(i)), missing: 0 },
    ...Array.from({ length: context + 1 }, (_, i): ColumnDescription => ({ name: `t${i}`, type: 'numeric', shift: 0, missing: 0 }))
  ]
  const root = options.outDir
  const rootExisted = existsSync(root)
  mkdirSync(root, { recursive: true })
  removeStaleTemps(root)
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  mkdirSync(tmp)
  try {
    const out = new DatasetWriter(tmp, columns, Math.max(1, Math.min(shardsWanted, trainWindows)), DEFAULT_BUCKETS)
    const row: number[] = new Array(context + 2).fill(0)
    try {
      for (let k = 0; k < windows; k++) {
        const start = k * context
        row[0] = text[start + context]
        for (let i = 0; i <= context; i++) row[i + 1] = text[start + i]
        out.add(row, isTestRow(k, seed, testFraction))
      }
    } catch (err) {
      out.abort()
      throw err
    }
    const { files, trainRows, stats, layout } = out.finish()
    const testShard = { ...files[files.length - 1], index: 0 }
    const trainShards = files.slice(0, -1)
    const counts = { rowsRead: windows, droppedMissing: 0, droppedDuplicates: 0, rowsWritten: windows }
    const description: DatasetDescription = {
      format: DATASET_FORMAT,
      label: LABEL,
      classes: columns[0].categories as string[],
      columns,
      transform: { normalize: 'none', missing: 'drop', buckets: DEFAULT_BUCKETS, testFraction, splitSeed: seed },
      features: context + 1,
      counts: { ...counts, trainRows, testRows: testShard.rows },
      stats: statsToDescription(layout, stats),
      shards: trainShards,
      test: testShard,
      lm: { context, tokens: 'bytes' }
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
      columns: [{ name: LABEL, type: 'label', missing: 0, categories: LM_CLASSES, note: 'the window\'s last byte' }, { name: `t0 … t${context}`, type: 'numeric', missing: 0, note: 'byte tokens' }],
      shards: trainShards.length,
      datasetId: id,
      dir,
      trainRows,
      testRows: testShard.rows,
      features: context + 1,
      classes: description.classes,
      bytes: files.reduce((n, f) => n + f.bytes, 0),
      existing,
      engine: { name: 'js' }
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    if (!rootExisted) try { rmdirSync(root) } catch {}
    throw err
  }
}

/** Offset of the first byte that breaks UTF-8 (called once the whole buffer failed `isUtf8`). */
function firstInvalidUtf8 (b: Uint8Array): number {
  let i = 0
  while (i < b.length) {
    const c = b[i]
    const need = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1
    if (need < 0) return i
    if (need > 0 && !isUtf8(b.subarray(i, i + need + 1))) return i
    i += need + 1
  }
  return Math.max(0, b.length - 1)
}

function lineAndColumn (b: Uint8Array, at: number): { line: number, column: number } {
  let line = 1
  let start = 0
  for (let i = 0; i < at; i++) {
    if (b[i] === 0x0a) {
      line++
      start = i + 1
    }
  }
  return { line, column: at - start + 1 }
}
