/**
 * The DuckDB engine of the import (see importer.ts for the rules it follows).
 *
 * DuckDB (`@duckdb/node-api`, an in-process database whose native binary
 * ships in the npm package) parses the file in parallel and does everything
 * that looks at all rows at once: missing values, column types, categories.
 * It keeps one table of the file (`src`); a text column is in it as itself
 * where the file fits in the memory limit (IN_MEMORY_TEXT), else only as its
 * hash, so that a large file's text is never held or spilled. JavaScript then
 * streams src's rows in file order, a result chunk at a time, with each row's
 * hash for the duplicates (a set of the hashes seen, the first row of each
 * kept) and the numbers for the training means (and, with `--missing fill`,
 * the categories' training counts), summed as the JavaScript engine sums.
 * Each chunk's columns come out as typed arrays (numbers, category indices as
 * ENUM codes, text as one buffer of UTF-8 bytes and offsets, read with a
 * native call per run of values DuckDB stores end to end: blobColumn), with
 * no JavaScript value per field. Where the kept rows' values fit in
 * HELD_SHARE of the memory limit (and src holds the text), that pass also
 * copies them out of the chunks (held.ts), and the Arrow shards (arrow.ts)
 * are written from there, a column at a time into the shard writers' column
 * buffers. Else a second pass takes the kept rows (by a bit per row of src)
 * and copies them to the writers chunk by chunk; where src holds only the
 * text's hash, the text comes from the file read again beside that pass (its
 * hashes checked against src's, row by row). src is scanned three times
 * (counts and the number check, categories: one grouping set per column,
 * duplicates and means) and a fourth to write where the rows are not held; a
 * streamed result runs up to STREAM_BUFFER ahead of the JavaScript taking it.
 * The two costliest regular expressions (missing values, numbers) are only
 * applied where a value's first byte allows a match (MAY_BE_MISSING,
 * MAY_BE_NUMBER).
 * DuckDB writes no Arrow IPC files, and the text's document frequencies must
 * be hashed as the trainer hashes them (in a worker thread, text-df.ts).
 *
 * Bounded memory: DuckDB runs with `memory_limit` (DEFAULT_MEMORY_LIMIT unless
 * asked) and `temp_directory` inside the import's work dir, so a file larger
 * than that spills there instead of failing, and the spill goes when the work
 * dir does.
 *
 * Every value is read as text first (Parquet's typed columns are cast to
 * text), so that a column is typed by the same rules whatever the format.
 * Missing values are today's: an empty or blank field, or na, n/a, nan, null
 * in any case, after trimming what JavaScript's `trim` trims.
 *
 * Exactly what the JavaScript engine computes:
 * - row order: src keeps insertion order (`preserve_insertion_order`), so its
 *   `rowid` is the row's place in the file, and a plain scan returns its rows
 *   in that order (checked chunk by chunk: the rowids must increase);
 * - duplicates: equal 64-bit hashes of the non-ignored values (DuckDB's
 *   `hash`; of a text column's hash where src holds that), the first in file
 *   order kept; rowset.ts says why a hash will do;
 * - the test split: `isTestRow(k)` for the k-th kept row, in JavaScript;
 * - each numeric column's training mean: summed in JavaScript, in file order;
 *   the parse of a decimal is correctly rounded in both engines, so the sums
 *   agree bit for bit and a data set has one id;
 * - categories are sorted in JavaScript (UTF-16 order, not DuckDB's bytes).
 *
 * Errors: DuckDB's CSV errors count rows, not lines, so when it refuses the
 * file the JavaScript reader reads it again to find the first bad row and
 * throws its error, with the line and column it names; only where that reader
 * finds nothing wrong is DuckDB's own message passed on (MalformedInputError,
 * at its row).
 */
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import type { DuckDBBlobVector, DuckDBConnection, DuckDBDataChunk, DuckDBInstance, DuckDBVector } from '@duckdb/node-api'
import { MalformedInputError, UnusableInputError } from './errors.ts'
import { MAX_CLASSES, fillIndices, isTestRow } from './engine.ts'
import type { CleanSink, EngineReport, PhaseReport, Profile, Scan, ScanSettings } from './engine.ts'
import type { ColumnDescription } from './description.ts'
import type { Utf8Column } from './columns.ts'
import { emptyError, findInputError, lineOfRow, nothingKept } from './scan-js.ts'
import { HashSet64 } from './rowset.ts'
import { HeldRows } from './held.ts'
import { delimiterOf } from './source.ts'

type DuckModule = typeof import('@duckdb/node-api')

/** The longest CSV row DuckDB accepts (its default). */
const MAX_LINE_BYTES = 2 * 1024 * 1024
/** DuckDB's CSV read buffer: each thread holds one, so it bounds the least memory limit that works (its default, 16 rows of the longest, is 32 MB). */
const CSV_BUFFER_BYTES = 4 * MAX_LINE_BYTES
/** The longest JSON line (source.ts's MAX_JSON_LINE_CHARS). */
const MAX_JSON_BYTES = 16 * 1024 * 1024

/** What JavaScript's `trim` and `\s` take as blank. */
const BLANKS = '\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff'
const BLANK_CLASS = '[\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}]'
/** importer.ts's NUMBER, in RE2's syntax. */
const NUMBER_RE2 = `${BLANK_CLASS}*[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?${BLANK_CLASS}*`
/** source.ts's missing values (blank, or na, n/a, nan, null in any case). RE2 gives up on a field at its first character that cannot match, so a long text costs nothing. */
const MISSING_RE2 = `${BLANK_CLASS}*(?i:na|n/a|nan|null)?${BLANK_CLASS}*`
/**
 * Whether `v` may be missing, from its first byte alone: a missing value is empty or starts with a blank (the
 * ASCII ones are below '!', the others are not ASCII) or with n or N. Most values start with another byte, and
 * then `norm` skips the regular expression (its call per value was about a third of the read). Byte comparisons,
 * not `ascii(v) IN (...)`: with that, DuckDB 1.5.6 hashes the CASE's result wrongly (a text column's hashes in src
 * and in the file read again differed from the second vector on).
 */
const MAY_BE_MISSING = (v: string): string => `(${v} < '!' OR (${v} >= 'N' AND ${v} < 'O') OR (${v} >= 'n' AND ${v} < 'o') OR ${v} >= chr(128))`

/** src may keep the text itself when the file's bytes times this are within the memory limit (a value costs its bytes and a 16-byte entry; the other columns too). */
const IN_MEMORY_TEXT = 3
/** The same for a Parquet file, whose text is compressed. */
const IN_MEMORY_PARQUET = 12

/** Whether `v` may match NUMBER_RE2, from its first byte alone: a digit, a sign, a point, or a blank (see MAY_BE_MISSING). */
const MAY_BE_NUMBER = (v: string): string => `(${v} < '!' OR ${v} >= chr(128) OR (${v} >= '0' AND ${v} < ':') OR (${v} >= '+' AND ${v} < '/'))`
/** Rows not dropped whose values decide, before the scan of every row, which columns cannot be numeric (one value that is not a number does). */
const SAMPLE_ROWS = 2048
/**
 * How far (in bytes of result chunks) a streamed query runs ahead of the JavaScript that reads it. DuckDB's
 * default, under 1 MB (a few chunks), left its threads waiting for JavaScript to take the next chunk and then
 * JavaScript waiting for them; with more, both work at once.
 */
const STREAM_BUFFER = '16MB'
/**
 * The kept rows' values are held in memory (held.ts) where they take at most this share of DuckDB's memory limit:
 * beside DuckDB's own (up to the limit), that keeps the import under 1 GB at the default limit.
 */
const HELD_SHARE = 0.5
/**
 * Rows handed to the shard writers at a time from the held rows (progress is reported between them): each writer
 * takes its rows of the window in turn, so a window's text should stay in the CPU's cache meanwhile (a 65536-row
 * window's, some 6 MB in the benchmark's file, took a fifth longer to gather).
 */
const HELD_WINDOW = 8192
/** STREAM_BUFFER, for a connection (it is a setting of each). */
const STREAM_BUFFER_SQL = `SET streaming_buffer_size = ${lit(STREAM_BUFFER)}`

export interface DuckEngine {
  version: string
  /** A Parquet file's column names. */
  parquetColumns: (path: string, name: string) => Promise<string[]>
  scanWithDuckDB: (s: ScanSettings) => Promise<Scan>
}

/** DuckDB, or null where its native binary cannot load (the import then uses the JavaScript engine). */
export async function loadDuckDB (): Promise<DuckEngine | null> {
  let duck: DuckModule
  try {
    duck = await import('@duckdb/node-api')
    duck.version()
  } catch {
    return null
  }
  const readBytes = nativeReadBytes()
  return {
    version: duck.version(),
    parquetColumns: async (path, name) => await parquetColumns(duck, path, name),
    scanWithDuckDB: async s => await scan(duck, s, readBytes)
  }
}

/**
 * The bindings' `get_data_from_pointer`, as the client itself loads them (resolved from its own package, so the
 * same native module and version), or null where they are not there (values are then read one by one).
 */
function nativeReadBytes (): ReadBytes | null {
  try {
    const client = createRequire(import.meta.url).resolve('@duckdb/node-api')
    const f = (createRequire(client)('@duckdb/node-bindings') as { get_data_from_pointer?: unknown }).get_data_from_pointer
    return typeof f === 'function' ? f as ReadBytes : null
  } catch {
    return null
  }
}

/** A SQL string literal. */
export function lit (s: string): string {
  return `'${s.replaceAll("'", "''")}'`
}

async function open (duck: DuckModule, options: Record<string, string>, file = ':memory:'): Promise<{ instance: DuckDBInstance, db: DuckDBConnection }> {
  const instance = await duck.DuckDBInstance.create(file, { preserve_insertion_order: 'true', ...options })
  return { instance, db: await instance.connect() }
}

async function parquetColumns (duck: DuckModule, path: string, name: string): Promise<string[]> {
  const { instance, db } = await open(duck, { threads: '1' })
  try {
    const r = await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${lit(path)})`)
    return r.getRowObjectsJS().map(row => String(row.column_name))
  } catch (err) {
    throw new MalformedInputError({ file: name, line: 1, column: 1 }, `not a Parquet file DuckDB can read: ${firstLine(err)}`)
  } finally {
    db.closeSync()
    instance.closeSync()
  }
}

function firstLine (err: unknown): string {
  return ((err as Error).message ?? String(err)).split('\n')[0]
}

/** Bytes in a size as DuckDB prints one ('488.2 MiB', '1.0 GiB', '512 bytes'); 0 where it cannot tell. */
export function bytesOf (size: string): number {
  const m = /^([\d.]+)\s*([KMGTP]?i?B|bytes?)$/i.exec(size.trim())
  if (m === null) return 0
  const unit = m[2].toUpperCase()
  const power = ' KMGTP'.indexOf(unit[0] === 'B' ? ' ' : unit[0])
  return Number(m[1]) * (unit.includes('I') ? 1024 : 1000) ** power
}

/** A number out of a one-row result (counts come back as BIGINT). */
function num (v: unknown): number {
  return v === null || v === undefined ? 0 : Number(v)
}

async function scan (duck: DuckModule, s: ScanSettings, readBytes: ReadBytes | null): Promise<Scan> {
  const { path, name, format, columns, labelAt, textAt, used, missingMode, maxCategories } = s
  const threads = s.threads > 0 ? s.threads : availableParallelism()
  const tempDirectory = join(s.work, 'duckdb')
  // in memory, but its tables are evicted to temp_directory when they outgrow memory_limit
  const { instance, db } = await open(duck, { memory_limit: s.memoryLimit, threads: String(threads), temp_directory: tempDirectory })
  // (its streamed results' buffer: DuckDB's threads run that far ahead of the JavaScript that takes the chunks)
  await db.run(STREAM_BUFFER_SQL)
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    db.closeSync()
    instance.closeSync()
  }
  let spilledBytes = 0
  const phases: PhaseReport[] = []
  let phaseStart = performance.now()
  let cpuStart = process.cpuUsage()
  /** The end of a phase: its time, the CPU time of every thread, and the process's peak RSS so far. */
  const phase = (name: string): void => {
    const now = performance.now()
    const cpu = process.cpuUsage(cpuStart)
    phases.push({ name, seconds: (now - phaseStart) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssBytes: process.resourceUsage().maxRSS * 1024 })
    phaseStart = now
    cpuStart = process.cpuUsage()
  }
  const noteSpill = async (): Promise<void> => {
    const r = await db.runAndReadAll('SELECT coalesce(sum(size), 0)::DOUBLE AS bytes FROM duckdb_temporary_files()')
    spilledBytes = Math.max(spilledBytes, num(r.getRowObjectsJS()[0].bytes))
  }
  const one = async (sql: string): Promise<Record<string, unknown>> => (await db.runAndReadAll(sql)).getRowObjectsJS()[0] as Record<string, unknown>
  try {
    await db.run([
      `CREATE MACRO norm(v) AS CASE WHEN ${MAY_BE_MISSING('v')} AND regexp_full_match(v, ${lit(MISSING_RE2)}) THEN NULL ELSE v END;`,
      // NULL where missing; the regular expression only where the first byte can start a number (MAY_BE_NUMBER)
      `CREATE MACRO isNumber(v) AS CASE WHEN v IS NULL THEN NULL WHEN ${MAY_BE_NUMBER('v')} THEN regexp_full_match(v, ${lit(NUMBER_RE2)}) ELSE false END;`,
      // only for values that match NUMBER_RE2; DuckDB's cast skips ASCII blanks, trim the others (slow, so only when needed)
      `CREATE MACRO to_number(v) AS coalesce(TRY_CAST(v AS DOUBLE), TRY_CAST(trim(v, ${lit(BLANKS)}) AS DOUBLE));`
    ].join('\n'))

    // Where the file fits in memory (by the memory limit DuckDB applies, with room to spare: the text takes twice
    // its bytes or less, a Parquet file's up to IN_MEMORY_PARQUET times), src keeps the text itself and the write
    // pass reads it from there; else src keeps its hash and the write pass reads the file again
    const limit = bytesOf(String((await one("SELECT current_setting('memory_limit') AS m")).m))
    const fits = s.totalBytes * (format === 'parquet' ? IN_MEMORY_PARQUET : IN_MEMORY_TEXT) <= limit
    const textInSrc = textAt.size > 0 && fits

    // ---- the file, as text, one row per data row in file order (rowid), missing values as NULL ----
    const c = (i: number): string => `c${i}`
    let relation: string
    let values: (i: number) => string
    if (format === 'csv') {
      const spec = columns.map((_, i) => `${lit(c(i))}: 'VARCHAR'`).join(', ')
      relation = `read_csv(${lit(path)}, columns = {${spec}}, header = true, auto_detect = false, delim = ${lit(delimiterOf(path))}, quote = '"', escape = '"', strict_mode = true, null_padding = false, max_line_size = ${MAX_LINE_BYTES}, buffer_size = ${CSV_BUFFER_BYTES}, encoding = 'utf-8')`
      values = i => `norm(${c(i)})`
    } else if (format === 'jsonl') {
      const spec = columns.map(col => `${lit(col)}: 'JSON'`).join(', ')
      relation = `read_json(${lit(path)}, format = 'newline_delimited', columns = {${spec}}, maximum_object_size = ${MAX_JSON_BYTES})`
      values = i => `norm(${ident(columns[i])} ->> '$')`
    } else {
      relation = `read_parquet(${lit(path)})`
      values = i => `norm(CAST(${ident(columns[i])} AS VARCHAR))`
    }
    try {
      if (format === 'jsonl') await checkJsonLines(db, path, relation, columns)
      // a text column is kept as its hash (NULL where missing) unless the file fits in memory (textInSrc), which is
      // all that the duplicates and the counts need: its bytes are read from the file again by the write pass, so
      // DuckDB holds (and spills) a fraction
      await db.run(`CREATE TABLE src AS SELECT ${[...used].map(i => textAt.has(i) && !textInSrc ? `${textHash(c(i))} AS ${c(i)}` : c(i)).join(', ')} FROM (SELECT ${[...used].map(i => `${values(i)} AS ${c(i)}`).join(', ')} FROM ${relation})`)
    } catch (err) {
      if (format !== 'parquet') await findInputError(path, name, format)
      throw engineInputError(err, name)
    }
    await noteSpill()
    phase('read')
    s.progress({ phase: 'scan', bytes: s.totalBytes, totalBytes: s.totalBytes, rows: 0 }, true)

    // ---- missing values and duplicates ----
    const label = c(labelAt)
    const dropped = missingMode === 'drop' ? [...used].map(i => `${c(i)} IS NULL`).join(' OR ') : `${label} IS NULL`
    // in the same scan of src, for the profiles below: over the rows not dropped, how many values each typed column
    // has, and whether every one is a number. That check (a regular expression per value) was most of this scan's
    // time; a column with a value that is not a number among SAMPLE_ROWS rows not dropped (any of them) is not
    // numeric, whatever the others are, so only the rest are checked over every row
    const typed = [...used].filter(i => !textAt.has(i))
    const notDroppedRows = `FILTER (WHERE NOT (${dropped}))`
    const sample = typed.length > 0 ? await one(`SELECT ${typed.map(i => `bool_and(isNumber(${c(i)})) AS n${i}`).join(', ')} FROM (SELECT ${typed.map(c).join(', ')} FROM src WHERE NOT (${dropped}) LIMIT ${SAMPLE_ROWS})`) : {}
    const mayBeNumeric = typed.filter(i => sample[`n${i}`] !== false)
    const numbers = typed.map(i => `, (count(${c(i)}) ${notDroppedRows})::DOUBLE AS p${i}${mayBeNumeric.includes(i) ? `, coalesce(bool_and(isNumber(${c(i)})) ${notDroppedRows}, true) AS n${i}` : ''}`).join('')
    // and, where src holds the text, each text column's bytes over those rows (the most the kept rows can have)
    const texts = [...used].filter(i => textAt.has(i))
    const textBytes = textInSrc ? texts.map(i => `, coalesce(sum(strlen(${c(i)})) ${notDroppedRows}, 0)::DOUBLE AS b${i}`).join('') : ''
    const counts = await one(`SELECT count(*)::DOUBLE AS rows, count(*) FILTER (WHERE ${dropped})::DOUBLE AS dropped, ${[...used].map(i => `count(${c(i)})::DOUBLE AS ${c(i)}`).join(', ')}${numbers}${textBytes} FROM src`)
    const rowsRead = num(counts.rows)
    const droppedMissing = num(counts.dropped)
    const lastLine = async (): Promise<number> => format === 'parquet' ? Math.max(1, rowsRead) : await lineOfRow(path, name, format, rowsRead - 1)
    if (rowsRead === 0) throw emptyError(name, format === 'parquet' ? 1 : await lineOfRow(path, name, format, 0))
    const notDroppedCount = rowsRead - droppedMissing
    // every row dropped for a missing value (a duplicate is only dropped after a first row that is kept)
    if (notDroppedCount === 0) throw nothingKept(name, await lastLine(), rowsRead, droppedMissing, 0)
    /** Which rows of src are kept: a bit per row, set by the duplicates' pass below. */
    const keptBits = new Uint8Array(Math.ceil(rowsRead / 8))
    let kept = 0

    /**
     * Streams `exprs` over src's rows not dropped for missing values, in file order (a plain scan keeps insertion
     * order; checked), and hands each chunk to `take` with its rows' rowids. DuckDB makes the next chunks (in
     * parallel) while `take` runs.
     */
    const readRows = async (exprs: string[], take: (chunk: DuckDBDataChunk, n: number, rs: Float64Array) => void | Promise<void>): Promise<void> => {
      const result = await db.stream(`SELECT rowid::DOUBLE AS r${exprs.map(e => `, ${e}`).join('')} FROM src WHERE NOT (${dropped})`)
      let last = -1
      let next = result.fetchChunk()
      try {
        for (;;) {
          const chunk = await next
          // a native call each: read once
          const n = chunk?.rowCount ?? 0
          if (chunk === null || n === 0) break
          next = result.fetchChunk()
          const rs = doubles(chunk.getColumnVector(0), n)
          if (!(rs[0] > last)) throw new Error(`DuckDB returned row ${rs[0]} after row ${last}: not in file order`)
          for (let j = 1; j < n; j++) if (!(rs[j] > rs[j - 1])) throw new Error(`DuckDB returned row ${rs[j]} after row ${rs[j - 1]}: not in file order`)
          last = rs[n - 1]
          await take(chunk, n, rs)
        }
      } finally {
        next.catch(() => {})
      }
    }

    /** As readRows, the kept rows only: `take` gets the kept rows among the chunk's (`rows`) and the k of the first. */
    const readKept = async (exprs: string[], take: (chunk: DuckDBDataChunk, rows: Uint32Array, k: number) => void | Promise<void>): Promise<void> => {
      const select = new Uint32Array(4096)
      let k = 0
      await readRows(exprs, async (chunk, n, rs) => {
        if (n > select.length) throw new Error(`DuckDB returned a chunk of ${n} rows, more than ${select.length}`)
        let taken = 0
        for (let j = 0; j < n; j++) {
          const r = rs[j]
          if ((keptBits[r >>> 3] & (1 << (r & 7))) !== 0) select[taken++] = j
        }
        if (taken === 0) return
        await take(chunk, select.subarray(0, taken), k)
        k += taken
      })
      if (k !== kept) throw new Error(`${name}: ${k} kept rows read back where ${kept} were kept`)
    }

    // ---- each column's profile over the kept rows ----
    // Over the rows not dropped for missing values: a duplicate repeats a kept row's values, so whether every value
    // is a number, whether there are any, and which values there are, are the same over the kept rows; only what
    // depends on the training rows (means, and the categories' training counts for the fill value) needs which rows
    // are kept and their k: a pass in file order below, summing as the JavaScript engine does.
    const notDropped = `FROM src WHERE NOT (${dropped})`
    const profiles: Profile[] = columns.map((_, i) => ({ missing: used.includes(i) ? rowsRead - num(counts[c(i)]) : 0, numeric: true, present: 0, trainN: 0, trainSum: 0, counts: null }))
    for (const i of typed) {
      profiles[i].present = num(counts[`p${i}`])
      profiles[i].numeric = mayBeNumeric.includes(i) && counts[`n${i}`] === true
    }
    // categories: the label's always, and every other typed column that is not numeric
    const categorical: number[] = []
    const grouped = typed.filter(i => i === labelAt || (!profiles[i].numeric && profiles[i].present > 0))
    const limitOf = (i: number): number => i === labelAt ? MAX_CLASSES : maxCategories
    // every such column's values and counts in one scan of src (a grouping set each; j: which column), up to one
    // more than its limit
    const valuesOf: Array<Array<{ v: string, n: number }>> = grouped.map(() => [])
    if (grouped.length > 0) {
      const which = `CASE ${grouped.map((i, j) => `WHEN GROUPING(${c(i)}) = 0 THEN ${j}`).join(' ')} END`
      const value = `CASE ${grouped.map(i => `WHEN GROUPING(${c(i)}) = 0 THEN ${c(i)}`).join(' ')} END`
      const limits = `CASE ${grouped.map((i, j) => `WHEN ${which} = ${j} THEN ${limitOf(i) + 1}`).join(' ')} END`
      const r = await db.runAndReadAll(`SELECT ${which}::INTEGER AS j, ${value} AS v, count(*)::DOUBLE AS n ${notDropped} GROUP BY GROUPING SETS (${grouped.map(i => `(${c(i)})`).join(', ')}) HAVING ${value} IS NOT NULL QUALIFY row_number() OVER (PARTITION BY ${which}) <= ${limits}`)
      for (const row of r.getRowObjectsJS()) valuesOf[Number(row.j)].push({ v: String(row.v), n: num(row.n) })
    }
    for (const [j, i] of grouped.entries()) {
      const limit = limitOf(i)
      const rows = valuesOf[j]
      if (rows.length > limit) {
        if (i === labelAt) {
          // where the JavaScript engine stops: the row that brings the 257th class (a value's first row is kept)
          const at = await one(`SELECT r::DOUBLE AS r FROM (SELECT min(rowid) AS r ${notDropped} AND ${label} IS NOT NULL GROUP BY ${label}) ORDER BY r LIMIT 1 OFFSET ${MAX_CLASSES}`)
          const line = format === 'parquet' ? num(at.r) + 1 : await lineOfRow(path, name, format, num(at.r))
          throw new UnusableInputError({ file: name, line, column: i + 1 }, `the label column "${columns[i]}" has more than ${MAX_CLASSES} distinct values: a classification label needs at most ${MAX_CLASSES} classes`)
        }
        continue
      }
      profiles[i].counts = new Map(rows.map(row => [row.v, [0, row.n]]))
      // the training counts only decide a fill value (the most frequent), and only where rows are filled
      if (i !== labelAt && missingMode === 'fill') categorical.push(i)
    }
    phase('profile')

    // ---- duplicates, and the training means and categories' training counts: one pass in file order ----
    // The first of equal rows is kept, equal meaning equal 64-bit hashes of the values (DuckDB's), as in the
    // JavaScript engine (rowset.ts): each row's hash comes over with the numbers and codes the sums need, and a set
    // of the hashes seen (16-32 bytes per row, in JavaScript, gone after the pass) says whether it is the
    // first; the k-th kept row is a training row or not as isTestRow(k) says, and summed in file order as the
    // JavaScript engine sums.
    const numeric = typed.filter(i => profiles[i].numeric && profiles[i].present > 0 && i !== labelAt)
    // Where the kept rows' values fit in memory (HELD_SHARE of the limit, and src holds the text itself), the pass
    // also copies every kept row's values out (held.ts: numbers, every categorical column's codes, text) and the
    // shards are written from there: no second scan of src
    const categories = grouped.filter(i => profiles[i].counts !== null)
    const heldTexts = (textInSrc ? texts : []).map(i => num(counts[`b${i}`]))
    const holds = fits && (texts.length === 0 || textInSrc) && HeldRows.bytes(notDroppedCount, numeric.length, categories.length, heldTexts) <= HELD_SHARE * limit
    let held: HeldRows | null = holds ? new HeldRows(notDroppedCount, numeric.length, categories.length, heldTexts) : null
    const coded = holds ? categories : categorical
    const exprs = [`hash(${[...used].map(c).join(', ')})`]
    for (const i of numeric) exprs.push(`coalesce(to_number(${c(i)}), 'NaN'::DOUBLE)`)
    const codedValues = coded.map(i => [...(profiles[i].counts as Map<string, [number, number]>).keys()])
    for (const [j, i] of coded.entries()) {
      await db.run(`CREATE TYPE p${i} AS ENUM (${codedValues[j].map(lit).join(', ')})`)
      exprs.push(`coalesce(enum_code(TRY_CAST(${c(i)} AS p${i}))::INTEGER, -1)`)
    }
    if (holds) for (const i of texts) exprs.push(`encode(coalesce(${c(i)}, ''))`)
    /** Where each column of `categorical` (the training counts') is among `coded`. */
    const countedAt = categorical.map(i => coded.indexOf(i))
    const sums = new Float64Array(numeric.length)
    const ns = new Float64Array(numeric.length)
    const trainCounts = categorical.map((_, j) => new Float64Array(codedValues[countedAt[j]].length))
    // (let, and dropped after the pass: the write pass's closure shares this scope)
    let seen: HashSet64 | null = new HashSet64(notDroppedCount)
    const select = new Uint32Array(4096)
    const chunkTexts: Utf8Column[] = holds ? texts.map(() => ({ offsets: new Int32Array(4097), data: new Uint8Array(1 << 20) })) : []
    await readRows(exprs, (chunk, n, rs) => {
      if (n > select.length) throw new Error(`DuckDB returned a chunk of ${n} rows, more than ${select.length}`)
      const h = words(chunk.getColumnVector(1), n)
      // the chunk's kept rows: those whose hash is new
      let taken = 0
      for (let row = 0; row < n; row++) {
        if (!(seen as HashSet64).add(h[2 * row + 1], h[2 * row])) continue
        const r = rs[row]
        keptBits[r >>> 3] |= 1 << (r & 7)
        select[taken++] = row
      }
      if (taken === 0) return
      const xs = numeric.map((_, j) => doubles(chunk.getColumnVector(2 + j), n))
      const codes = coded.map((_, j) => int32s(chunk.getColumnVector(2 + numeric.length + j), n))
      const counted = countedAt.map(j => codes[j])
      for (let t = 0; t < taken; t++) {
        if (isTestRow(kept + t, s.seed, s.testFraction)) continue
        const row = select[t]
        for (let j = 0; j < xs.length; j++) {
          const x = xs[j][row]
          if (Number.isNaN(x)) continue
          ns[j] += 1
          sums[j] += x
        }
        for (let j = 0; j < counted.length; j++) if (counted[j][row] >= 0) trainCounts[j][counted[j][row]] += 1
      }
      kept += taken
      if (held === null) return
      const first = 2 + numeric.length + coded.length
      for (let t = 0; t < texts.length; t++) blobColumn(chunk.getColumnVector(first + t) as DuckDBBlobVector, n, readBytes, chunkTexts[t])
      held.take(xs, codes, chunkTexts, select, taken)
    })
    seen = null
    numeric.forEach((i, j) => {
      profiles[i].trainN = ns[j]
      profiles[i].trainSum = sums[j]
    })
    categorical.forEach((i, j) => {
      const m = profiles[i].counts as Map<string, [number, number]>
      codedValues[countedAt[j]].forEach((v, code) => { (m.get(v) as [number, number])[0] = trainCounts[j][code] })
    })
    await noteSpill()
    phase('dedupe')
    const droppedDuplicates = notDroppedCount - kept
    const heldLayout: HeldLayout = { numeric, coded, codedValues, texts }

    return {
      profiles,
      rowsRead,
      droppedMissing,
      droppedDuplicates,
      kept,
      lastLine,
      write: async (described, sink) => {
        if (held !== null) {
          // src is not read again: DuckDB frees it (on a thread of its own, so that closing it at the end costs less)
          // while the shards are written; waited for either way, so that nothing is running when it is closed
          const dropped = db.run('DROP TABLE src')
          try {
            writeHeld(held, described, heldLayout, sink)
          } finally {
            held = null
            await dropped.catch(() => {})
          }
          phase('write')
          return
        }
        // categories as ENUMs, so DuckDB hands over each value's index (its one-hot position, its class); missing
        // values filled here, so that every column comes out without nulls, as a typed array
        const fillIndex = fillIndices(described)
        const exprs: string[] = []
        const at: number[] = []
        const kinds: Array<'number' | 'code' | 'text'> = []
        for (let i = 0; i < described.length; i++) {
          const col = described[i]
          if (col.type === 'ignored') continue
          at.push(i)
          if (col.type === 'numeric') {
            kinds.push('number')
            exprs.push(`coalesce(to_number(${c(i)}), ${typeof col.fill === 'number' ? doubleLiteral(col.fill) : '0'}::DOUBLE)`)
          } else if (col.type === 'text') {
            // its bytes where src holds them; else its hash, to check that the file's rows read again line up with src's
            kinds.push('text')
            exprs.push(textInSrc ? `encode(coalesce(${c(i)}, ''))` : `coalesce(${c(i)}, 0::UBIGINT)`)
          } else {
            kinds.push('code')
            await db.run(`CREATE TYPE e${i} AS ENUM (${(col.categories ?? []).map(lit).join(', ')})`)
            exprs.push(`coalesce(enum_code(TRY_CAST(${c(i)} AS e${i}))::INTEGER, ${fillIndex[i]})`)
          }
        }
        const columns: Array<Float64Array | Int32Array | Utf8Column | null> = new Array(described.length).fill(null)
        // the text columns: from src, or the file read again, every row in file order, on a connection of its own
        // (DuckDB parses it beside this pass), with the same hashes as src's
        const texts = at.filter((_, j) => kinds[j] === 'text')
        const file = texts.length > 0 && !textInSrc ? await FileRows.open(await instance.connect(), `SELECT ${texts.map(i => `encode(coalesce(${values(i)}, '')) AS t${i}, coalesce(${textHash(values(i))}, 0::UBIGINT) AS h${i}`).join(', ')} FROM ${relation}`, texts.length, readBytes) : null
        // each text column's kept rows of the chunk (the others empty), copied out of the file's chunks; reused, as
        // the sink reads a chunk's columns before the next
        const textColumns: Utf8Column[] = texts.map(() => ({ offsets: new Int32Array(4097), data: new Uint8Array(1 << 20) }))
        const hashes: Uint32Array[] = new Array(texts.length)
        try {
          await readKept(exprs, async (chunk, rows) => {
            const n = chunk.rowCount
            const rs = doubles(chunk.getColumnVector(0), n)
            for (let j = 0; j < at.length; j++) {
              const v = chunk.getColumnVector(j + 1)
              if (kinds[j] === 'text') {
                // its bytes; or its hash, checked against the file's, and the bytes below
                const t = texts.indexOf(at[j])
                if (textInSrc) blobColumn(v as DuckDBBlobVector, n, readBytes, textColumns[t])
                else hashes[t] = words(v, n)
                columns[at[j]] = textColumns[t]
              } else {
                columns[at[j]] = kinds[j] === 'number' ? doubles(v, n) : int32s(v, n)
              }
            }
            if (file !== null) {
              const ends = textColumns.map(() => 0)
              let next = 0
              // a run of kept rows that are consecutive both here and in the file's current chunk: [row0, row0 + length)
              // here, [index0, index0 + length) there, copied at once (before the file moves on to its next chunk)
              let row0 = 0
              let index0 = 0
              let length = 0
              const copyRun = (): void => {
                if (length === 0) return
                for (let t = 0; t < texts.length; t++) {
                  const from = file.texts[t]
                  const to = textColumns[t]
                  const end = ends[t]
                  const a = from.offsets[index0]
                  const b = from.offsets[index0 + length]
                  to.offsets.fill(end, next, row0 + 1)
                  if (end + b - a > to.data.length) to.data = grown(to.data, end, end + b - a)
                  to.data.set(from.data.subarray(a, b), end)
                  for (let k = 1; k <= length; k++) to.offsets[row0 + k] = end + from.offsets[index0 + k] - a
                  ends[t] = end + b - a
                }
                next = row0 + length
                length = 0
              }
              for (const row of rows) {
                let index = file.indexOf(rs[row])
                if (index < 0) {
                  copyRun()
                  index = await file.load(rs[row])
                }
                for (let t = 0; t < texts.length; t++) {
                  const fh = file.hashes[t]
                  const h = hashes[t]
                  if (fh[2 * index] !== h[2 * row] || fh[2 * index + 1] !== h[2 * row + 1]) throw new Error(`${name}: row ${rs[row]} of the file read again is not the row read first: import it again`)
                }
                if (length > 0 && row === row0 + length && index === index0 + length) {
                  length++
                } else {
                  copyRun()
                  row0 = row
                  index0 = index
                  length = 1
                }
              }
              copyRun()
              for (let t = 0; t < texts.length; t++) textColumns[t].offsets.fill(ends[t], next, n + 1)
            }
            sink.columns(columns, n, rows)
          })
        } finally {
          file?.close()
        }
        await noteSpill()
        phase('write')
      },
      engine: async (): Promise<EngineReport> => {
        const r = await one("SELECT current_setting('memory_limit') AS memory, current_setting('threads')::DOUBLE AS threads, current_setting('temp_directory') AS temp")
        return { name: 'duckdb', version: duck.version(), memoryLimit: String(r.memory), threads: num(r.threads), tempDirectory: String(r.temp), spilledBytes, phases }
      },
      close
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** Where the duplicates' pass put each column among the held rows' (HeldRows) columns, by its place in the file. */
interface HeldLayout {
  numeric: number[]
  coded: number[]
  /** The coded columns' values in the order of their codes (the profile's). */
  codedValues: string[][]
  texts: number[]
}

/**
 * The held rows to the shard writers, as the write pass from src would give them: missing numbers become the
 * column's fill value (0 without one, or where it is not finite: doubleLiteral's rule), category codes become
 * the index in the description's (sorted) categories, missing ones its fill index, missing text ''. The held
 * arrays are changed in place (they are written once).
 */
function writeHeld (held: HeldRows, described: ColumnDescription[], layout: HeldLayout, sink: CleanSink): void {
  const fillIndex = fillIndices(described)
  const columns: Array<Float64Array | Int32Array | Utf8Column | null> = new Array(described.length).fill(null)
  const n = held.rows
  for (let i = 0; i < described.length; i++) {
    const col = described[i]
    if (col.type === 'ignored') continue
    if (col.type === 'numeric') {
      const x = held.numbers[layoutAt(layout.numeric, i, col.name)]
      const fill = typeof col.fill === 'number' && Number.isFinite(col.fill) ? col.fill : 0
      for (let r = 0; r < n; r++) if (Number.isNaN(x[r])) x[r] = fill
      columns[i] = x
    } else if (col.type === 'text') {
      columns[i] = held.texts[layoutAt(layout.texts, i, col.name)]
    } else {
      const j = layoutAt(layout.coded, i, col.name)
      const index = new Map((col.categories ?? []).map((v, k) => [v, k]))
      // remap[code + 1]: code -1 (missing) to the fill index
      const remap = Int32Array.from([fillIndex[i], ...layout.codedValues[j].map(v => index.get(v) ?? -1)])
      if (remap.includes(-1)) throw new Error(`column "${col.name}": a value held is not among its categories`)
      const codes = held.codes[j]
      for (let r = 0; r < n; r++) codes[r] = remap[codes[r] + 1]
      columns[i] = codes
    }
  }
  const rows = new Uint32Array(Math.min(n, HELD_WINDOW)).map((_, r) => r)
  for (let a = 0; a < n; a += HELD_WINDOW) {
    const m = Math.min(HELD_WINDOW, n - a)
    const window = columns.map(v => v === null ? null : v instanceof Float64Array || v instanceof Int32Array ? v.subarray(a, a + m) : { offsets: v.offsets.subarray(a, a + m + 1), data: v.data })
    sink.columns(window, m, rows.subarray(0, m))
  }
}

/** Column i's place among `held`, where the duplicates' pass held it. */
function layoutAt (held: number[], i: number, name: string): number {
  const j = held.indexOf(i)
  if (j < 0) throw new Error(`column "${name}" is written but was not held`)
  return j
}

/** A double as a SQL literal that DuckDB reads back to the same double (JavaScript's shortest round-trip form). */
function doubleLiteral (x: number): string {
  return Number.isFinite(x) ? `CAST(${lit(Object.is(x, -0) ? '-0.0' : String(x))} AS DOUBLE)` : '0'
}

/**
 * A DOUBLE column of a result chunk, without nulls, as a Float64Array: the vector's own memory where the
 * client exposes it (valid while the chunk is), else read value by value.
 */
function doubles (v: DuckDBVector, n: number): Float64Array {
  const items = (v as unknown as { items?: unknown }).items
  if (items instanceof Float64Array && items.length >= n) return items
  return Float64Array.from({ length: n }, (_, i) => Number(v.getItem(i)))
}

/** An INTEGER column of a result chunk, without nulls, as an Int32Array (see doubles). */
function int32s (v: DuckDBVector, n: number): Int32Array {
  const items = (v as unknown as { items?: unknown }).items
  if (items instanceof Int32Array && items.length >= n) return items
  return Int32Array.from({ length: n }, (_, i) => Number(v.getItem(i)))
}

const EMPTY = new Uint8Array(0)

/** A text value's hash, NULL where it is missing. */
function textHash (v: string): string {
  return `CASE WHEN ${v} IS NULL THEN NULL ELSE hash(${v}) END`
}

/** A UBIGINT column of a result chunk, without nulls, as pairs of 32-bit words (compared without making BigInts). */
function words (v: DuckDBVector, n: number): Uint32Array {
  const items = (v as unknown as { items?: unknown }).items
  if (items instanceof BigUint64Array && items.length >= n) return new Uint32Array(items.buffer, items.byteOffset, 2 * n)
  const out = new BigUint64Array(n)
  for (let i = 0; i < n; i++) out[i] = BigInt(v.getItem(i) as bigint)
  return new Uint32Array(out.buffer)
}

/** The client's native read of `byteCount` bytes at the pointer stored in `buffer` at `pointerOffset` (a copy). */
type ReadBytes = (buffer: ArrayBuffer, pointerOffset: number, byteCount: number) => Uint8Array

/** The room for `need` bytes, the first `used` of `data` kept. */
function grown (data: Uint8Array, used: number, need: number): Uint8Array {
  const out = new Uint8Array(Math.max(need, 2 * data.length))
  out.set(data.subarray(0, used))
  return out
}

/**
 * A BLOB column of a result chunk, without nulls, into `out` (its buffers grown where needed). A vector's values
 * are 16-byte entries: the length, then the bytes themselves where they fit in 12, else a pointer to them. DuckDB
 * mostly stores a chunk's longer values end to end, so each run of them whose pointers follow on from the previous
 * value's end is read with one native call (where the client gives its entries and `readBytes`), not one per
 * value: that per-value call was the largest single cost of the write pass. Only the values' own bytes are read.
 */
function blobColumn (v: DuckDBBlobVector, n: number, readBytes: ReadBytes | null, out: Utf8Column): void {
  if (out.offsets.length < n + 1) out.offsets = new Int32Array(n + 1)
  const offsets = out.offsets
  const dv = (v as unknown as { dataView?: unknown }).dataView
  if (!(dv instanceof DataView) || dv.byteLength < 16 * n || readBytes === null) {
    const items = Array.from({ length: n }, (_, i) => v.getItemBytes(i) ?? EMPTY)
    let total = 0
    for (let i = 0; i < n; i++) { offsets[i] = total; total += items[i].length }
    offsets[n] = total
    if (total > out.data.length) out.data = grown(out.data, 0, total)
    for (let i = 0; i < n; i++) out.data.set(items[i], offsets[i])
    return
  }
  let total = 0
  for (let i = 0; i < n; i++) {
    offsets[i] = total
    total += dv.getUint32(16 * i, true)
  }
  offsets[n] = total
  if (total > out.data.length) out.data = grown(out.data, 0, total)
  const data = out.data
  const entries = new Uint8Array(dv.buffer, dv.byteOffset, 16 * n)
  const pointer = (i: number): number => dv.getUint32(16 * i + 8, true) + dv.getUint32(16 * i + 12, true) * 2 ** 32
  let i = 0
  while (i < n) {
    const length = offsets[i + 1] - offsets[i]
    if (length <= 12) {
      for (let b = 0; b < length; b++) data[offsets[i] + b] = entries[16 * i + 4 + b]
      i++
      continue
    }
    let end = pointer(i) + length
    let j = i + 1
    while (j < n && offsets[j + 1] - offsets[j] > 12 && pointer(j) === end) {
      end += offsets[j + 1] - offsets[j]
      j++
    }
    data.set(readBytes(dv.buffer as ArrayBuffer, dv.byteOffset + 16 * i + 8, offsets[j] - offsets[i]), offsets[i])
    i = j
  }
}

/**
 * The file read again beside the write pass: per text column, its bytes and its hash, by row index (asked for in
 * increasing order). The next chunk is fetched while the current one is used.
 */
class FileRows {
  private readonly db: DuckDBConnection
  private readonly result: Awaited<ReturnType<DuckDBConnection['stream']>>
  private readonly columns: number
  private readonly readBytes: ReadBytes | null
  private chunk: DuckDBDataChunk | null = null
  private start = 0
  private end = 0
  private next: Promise<DuckDBDataChunk | null>
  /** The current chunk's columns: text t's bytes (buffers reused from chunk to chunk), and its hashes as pairs of words. */
  readonly texts: Utf8Column[]
  hashes: Uint32Array[] = []

  private constructor (db: DuckDBConnection, result: Awaited<ReturnType<DuckDBConnection['stream']>>, columns: number, readBytes: ReadBytes | null) {
    this.db = db
    this.result = result
    this.columns = columns
    this.readBytes = readBytes
    this.texts = Array.from({ length: columns }, () => ({ offsets: new Int32Array(4097), data: new Uint8Array(1 << 20) }))
    this.next = result.fetchChunk()
    this.next.catch(() => {})
  }

  /** `sql` selects, per text column, its bytes then its hash. */
  static async open (db: DuckDBConnection, sql: string, columns: number, readBytes: ReadBytes | null): Promise<FileRows> {
    try {
      await db.run(STREAM_BUFFER_SQL)
      return new FileRows(db, await db.stream(sql), columns, readBytes)
    } catch (err) {
      db.closeSync()
      throw err
    }
  }

  /** Row r's index in the current chunk, or -1 (then `load` it). */
  indexOf (r: number): number {
    return r >= this.start && r < this.end ? r - this.start : -1
  }

  /** Moves on to the chunk holding row r; returns r's index there. */
  async load (r: number): Promise<number> {
    if (r < this.start) throw new Error(`row ${r} asked for after row ${this.start}`)
    while (r >= this.end) {
      const chunk = await this.next
      if (chunk === null || chunk.rowCount === 0) throw new Error(`the file read again ended before row ${r}: it changed during the import; import it again`)
      this.next = this.result.fetchChunk()
      this.next.catch(() => {})
      this.chunk = chunk
      this.start = this.end
      this.end += chunk.rowCount
    }
    const chunk = this.chunk as DuckDBDataChunk
    const n = this.end - this.start
    for (let t = 0; t < this.columns; t++) blobColumn(chunk.getColumnVector(2 * t) as DuckDBBlobVector, n, this.readBytes, this.texts[t])
    this.hashes = Array.from({ length: this.columns }, (_, t) => words(chunk.getColumnVector(2 * t + 1), n))
    return r - this.start
  }

  close (): void {
    this.db.closeSync()
  }
}

/** A SQL identifier. */
function ident (s: string): string {
  return `"${s.replaceAll('"', '""')}"`
}

/**
 * JSON lines DuckDB would read but the rules refuse: a line that is not an
 * object, a key that is not a column, a value that is an array or an object.
 * The JavaScript reader then names the first one.
 */
async function checkJsonLines (db: DuckDBConnection, path: string, relation: string, columns: string[]): Promise<void> {
  const known = `[${columns.map(lit).join(', ')}]`
  const odd = await db.runAndReadAll(`SELECT count(*)::DOUBLE AS n FROM read_ndjson_objects(${lit(path)}) WHERE json_type(json) <> 'OBJECT' OR len(list_filter(json_keys(json), x -> NOT list_contains(${known}, x))) > 0`)
  const nested = await db.runAndReadAll(`SELECT count(*)::DOUBLE AS n FROM ${relation} WHERE ${columns.map(col => `json_type(${ident(col)}) IN ('ARRAY', 'OBJECT')`).join(' OR ')}`)
  if (num(odd.getRowObjectsJS()[0].n) > 0 || num(nested.getRowObjectsJS()[0].n) > 0) throw new Error('JSON lines outside the rules')
}

/** DuckDB's refusal of the file, where the JavaScript reader found nothing wrong: its message, at the row it names. */
function engineInputError (err: unknown, name: string): unknown {
  const message = (err as Error).message ?? ''
  if (!/^(Invalid Input|Conversion|Parser|IO) Error/.test(message)) return err
  const line = /Line: (\d+)/.exec(message)
  const what = message.split('\n').filter(l => l.trim() !== '' && !/^(Original Line|Possible)/.test(l)).slice(0, 2).join(': ')
  return new MalformedInputError({ file: name, line: line !== null ? Number(line[1]) : 1, column: 1 }, `DuckDB cannot read it: ${what}`)
}
