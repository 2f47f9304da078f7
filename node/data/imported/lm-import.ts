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
 * `t0` … `tN` (numeric, not normalised: the byte values, stored as uint8, so
 * a shard is about as large as its text; readers see the same numbers as
 * from float64), so the feature row
 * is the window itself and the class count is 256. The description's `lm`
 * field says so (`{ context: N, tokens: 'bytes' }`).
 *
 * Bounds: the file is read whole, at most MAX_LM_TEXT_BYTES; bytes that are
 * not UTF-8 are refused with the line and column of the first bad one.
 */
import { readFileSync } from 'node:fs'
import { isUtf8 } from 'node:buffer'
import { LM_CLASSES } from '../lm.ts'
import type { ColumnDescription } from './description.ts'
import { DataInputError, EmptyInputError, EncodingError } from './errors.ts'
import { isTestRow } from './engine.ts'
import { DEFAULT_BUCKETS, reportOf } from './importer.ts'
import type { ImportReport } from './importer.ts'
import { DEFAULT_SHARDS, DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DatasetWriter, WorkDir, checkSplitOptions, countTrainRows, publish, statInput } from './output.ts'
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
  checkSplitOptions(shardsWanted, testFraction)
  const { size } = statInput(path, name)
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
    ...Array.from({ length: context + 1 }, (_, i): ColumnDescription => ({ name: `t${i}`, type: 'numeric', storage: tokenStorage(LM_CLASSES), shift: 0, missing: 0 }))
  ]
  const work = WorkDir.open(options.outDir)
  try {
    const out = new DatasetWriter(work.path, columns, Math.max(1, Math.min(shardsWanted, trainWindows)), DEFAULT_BUCKETS)
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
    const published = await publish(work, out, {
      label: LABEL,
      classes: columns[0].categories as string[],
      columns,
      transform: { normalize: 'none', missing: 'drop', buckets: DEFAULT_BUCKETS, testFraction, splitSeed: seed },
      features: context + 1,
      lm: { context, tokens: 'bytes' }
    }, { rowsRead: windows, droppedMissing: 0, droppedDuplicates: 0, rowsWritten: windows })
    return reportOf(published, { name: 'js' }, [
      { name: LABEL, type: 'label', missing: 0, categories: LM_CLASSES, note: 'the window\'s last byte' },
      { name: `t0 … t${context}`, type: 'numeric', missing: 0, note: `byte tokens, stored as ${tokenStorage(LM_CLASSES)}` }
    ])
  } catch (err) {
    work.discard()
    throw err
  }
}

/** The narrowest integer column that holds token ids 0 … vocabulary − 1. */
export function tokenStorage (vocabulary: number): 'uint8' | 'uint16' | 'int32' {
  return vocabulary <= 256 ? 'uint8' : vocabulary <= 65536 ? 'uint16' : 'int32'
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
