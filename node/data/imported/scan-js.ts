/**
 * The JavaScript engine of the import (see importer.ts for the rules): two
 * streaming passes over the file through source.ts, so memory does not grow
 * with the file's size (only with its row count, by about 9 bytes a row: the
 * duplicate table and one bit per row saying whether it was kept).
 *
 * Used when DuckDB cannot load, and by DuckDB's engine for what only a
 * line-by-line reader knows: the header with its checks, the exact position of
 * bad input (DuckDB's line numbers count rows, not lines), and the line of a
 * given row.
 */
import { DataInputError, EmptyInputError, UnusableInputError } from './errors.ts'
import { MAX_CLASSES, NUMBER, fillIndices, isTestRow } from './engine.ts'
import type { Profile, Scan, ScanSettings } from './engine.ts'
import { BitSet, HashSet64, rowHash } from './rowset.ts'
import { openSource } from './source.ts'
import type { InputFormat, RowSource } from './source.ts'

/** The header's column names (with source.ts's checks: empty file, no header, duplicate or empty names, bytes that are not UTF-8). */
export async function readColumns (path: string, name: string, format: InputFormat): Promise<string[]> {
  const source = await openSource(path, { name, format })
  await source.rows.return(undefined)
  return source.columns
}

/**
 * Reads the whole file as the JavaScript reader does and throws its error, if
 * it finds one: the first bad row, with today's message and position.
 */
export async function findInputError (path: string, name: string, format: InputFormat): Promise<void> {
  const source = await openSource(path, { name, format })
  for await (const _ of source.rows) { /* the reader throws on bad input */ }
}

/** The line data row `row` (0-based, in file order) starts on; the line after the last row if there are fewer. */
export async function lineOfRow (path: string, name: string, format: InputFormat, row: number): Promise<number> {
  const source = await openSource(path, { name, format })
  let r = 0
  let line = 1
  for await (const x of source.rows) {
    line = x.line
    if (r++ === row) {
      await source.rows.return(undefined)
      return line
    }
  }
  return line + 1
}

export async function scanWithJs (s: ScanSettings): Promise<Scan> {
  if (s.format === 'parquet') throw new DataInputError({ file: s.name, line: 1, column: 1 }, 'the JavaScript reader reads CSV and JSON lines, not Parquet')
  const { path, name, format, columns, labelAt, textAt, used, missingMode, seed, testFraction, maxCategories, totalBytes, progress } = s
  const source = await openSource(path, { name, format })
  checkSameHeader(source, columns, name)
  const profiles: Profile[] = columns.map(() => ({ missing: 0, numeric: true, present: 0, trainN: 0, trainSum: 0, counts: new Map() }))
  const seen = new HashSet64()
  const keep = new BitSet()
  let rowsRead = 0
  let droppedMissing = 0
  let droppedDuplicates = 0
  let kept = 0
  let lastLine = 1
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
  if (rowsRead === 0) throw emptyError(name, lastLine + 1)
  if (kept === 0) throw nothingKept(name, lastLine, rowsRead, droppedMissing, droppedDuplicates)

  return {
    profiles,
    rowsRead,
    droppedMissing,
    droppedDuplicates,
    kept,
    lastLine: async () => lastLine,
    write: async (described, sink) => {
      const again = await openSource(path, { name, format })
      checkSameHeader(again, columns, name)
      const lookups = described.map(c => c.categories !== undefined ? new Map(c.categories.map((v, i) => [v, i])) : null)
      const fillIndex = fillIndices(described)
      let r = 0
      const clean = new Array<number | string | null>(described.length).fill(null)
      for await (const row of again.rows) {
        if (!keep.has(r++)) continue
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
        sink.row(clean)
      }
      if (r !== rowsRead) throw new Error(`${name} changed during the import (${rowsRead} rows in the first pass, ${r} in the second): import it again`)
    },
    engine: async () => ({ name: 'js' }),
    close: async () => {}
  }
}

/** No data rows (the message both engines give). */
export function emptyError (name: string, line: number): EmptyInputError {
  return new EmptyInputError({ file: name, line, column: 1 }, 'no data rows: the file has a header and nothing else')
}

/** Every row was dropped (the message both engines give). */
export function nothingKept (name: string, line: number, rowsRead: number, droppedMissing: number, droppedDuplicates: number): UnusableInputError {
  return new UnusableInputError({ file: name, line, column: 1 }, `no rows left to write: all ${rowsRead} were dropped (${droppedMissing} with missing values, ${droppedDuplicates} duplicates)`)
}

function checkSameHeader (source: RowSource, columns: string[], name: string): void {
  if (source.columns.length !== columns.length || source.columns.some((c, i) => c !== columns[i])) throw new Error(`${name} changed during the import (its header differs): import it again`)
}
