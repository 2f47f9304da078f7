/**
 * Reading an input file as rows of strings, streaming: CSV (RFC 4180 quoting,
 * parsed by csv-parse) or JSON lines (one flat object per line). Every row
 * carries the line it starts on, so that errors can name it.
 *
 * The bytes are checked to be UTF-8 on the way in (a byte-order mark is
 * skipped); the first invalid byte stops the read with an EncodingError naming
 * its line and character.
 *
 * Missing values: an empty (or all-blank) field, or one of MISSING_TOKENS
 * (case-insensitive) in CSV; `null`, an absent key, or an empty string in
 * JSON lines. They come out as `null`.
 */
import { createReadStream } from 'node:fs'
import { isUtf8 } from 'node:buffer'
import { basename, extname } from 'node:path'
import { createInterface } from 'node:readline'
import { Transform } from 'node:stream'
import type { TransformCallback } from 'node:stream'
import { parse } from 'csv-parse'
import { EmptyInputError, EncodingError, MalformedInputError, RaggedRowError } from './errors.ts'

/** Field values read as "no value" (compared trimmed and lower-cased). */
export const MISSING_TOKENS: ReadonlySet<string> = new Set(['', 'na', 'n/a', 'nan', 'null'])

/** A JSON line longer than this is refused: a row is a record, not a document store. */
export const MAX_JSON_LINE_CHARS = 16 * 1024 * 1024

/** Parquet is read by DuckDB only (duckdb.ts); this reader takes CSV and JSON lines. */
export type InputFormat = 'csv' | 'jsonl' | 'parquet'

export interface SourceRow {
  /** One value per column of the header, in header order; null where missing. */
  values: Array<string | null>
  /** 1-based line the row starts on. */
  line: number
}

export interface RowSource {
  /** The file as errors name it. */
  file: string
  format: InputFormat
  columns: string[]
  rows: AsyncGenerator<SourceRow>
  /** Bytes of the file read so far. */
  bytesRead: () => number
}

/** `.jsonl`/`.ndjson`/`.json` are JSON lines, `.parquet`/`.pq` Parquet; anything else is CSV (tab-separated for `.tsv`). */
export function formatOf (file: string): InputFormat {
  const ext = extname(file).toLowerCase()
  if (ext === '.parquet' || ext === '.pq') return 'parquet'
  return ext === '.jsonl' || ext === '.ndjson' || ext === '.json' ? 'jsonl' : 'csv'
}

/** The longest missing-value token, blanks aside. */
const MAX_TOKEN = 4

function isPrintableAscii (c: number): boolean {
  return c > 32 && c < 127
}

function isMissing (raw: string): boolean {
  const n = raw.length
  if (n === 0) return true
  // only short fields, or fields that start or end with a blank, can be a token or all blank (a printable ASCII
  // character is no blank; the others, \u00a0 or \u3000 say, are looked at by trim)
  if (n > MAX_TOKEN && isPrintableAscii(raw.charCodeAt(0)) && isPrintableAscii(raw.charCodeAt(n - 1))) return false
  return MISSING_TOKENS.has(raw.trim().toLowerCase())
}

/**
 * Passes bytes through if they are UTF-8; fails with an EncodingError at the
 * first byte that is not. A character cut across two chunks is held back
 * until its end arrives.
 */
class Utf8Guard extends Transform {
  readonly file: string
  bytes = 0
  /** Complete lines before the current chunk. */
  private lines = 0
  /** Characters since the last newline, before the current chunk. */
  private column = 0
  private carry: Buffer | null = null
  private first = true

  constructor (file: string) {
    super()
    this.file = file
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.byteLength
    let buf = this.carry === null ? chunk : Buffer.concat([this.carry, chunk])
    this.carry = null
    if (this.first && buf.byteLength >= 3) {
      this.first = false
      if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3)
    } else if (this.first) {
      this.carry = buf
      done()
      return
    }
    // hold back an incomplete character at the end
    const cut = incompleteTail(buf)
    if (cut < buf.byteLength) {
      this.carry = Buffer.from(buf.subarray(cut))
      buf = buf.subarray(0, cut)
    }
    if (!isUtf8(buf)) {
      done(this.error(buf, firstInvalid(buf)))
      return
    }
    this.advance(buf)
    done(null, buf)
  }

  override _flush (done: TransformCallback): void {
    if (this.carry !== null) {
      const buf = this.carry
      this.carry = null
      if (!isUtf8(buf)) {
        done(this.error(buf, firstInvalid(buf)))
        return
      }
      this.advance(buf)
      this.push(buf)
    }
    done()
  }

  private advance (buf: Buffer): void {
    let nl = buf.indexOf(10)
    if (nl === -1) {
      this.column += countChars(buf, 0, buf.byteLength)
      return
    }
    let last = nl
    while (nl !== -1) {
      this.lines++
      last = nl
      nl = buf.indexOf(10, nl + 1)
    }
    this.column = countChars(buf, last + 1, buf.byteLength)
  }

  private error (buf: Buffer, at: number): EncodingError {
    let line = this.lines + 1
    let column = this.column
    let from = 0
    for (let nl = buf.indexOf(10); nl !== -1 && nl < at; nl = buf.indexOf(10, nl + 1)) {
      line++
      from = nl + 1
      column = 0
    }
    column += countChars(buf, from, at) + 1
    return new EncodingError({ file: this.file, line, column }, `not UTF-8: byte 0x${buf[at].toString(16).padStart(2, '0')} cannot start or continue a character (save the file as UTF-8)`)
  }
}

/** Characters (UTF-8 lead bytes) in buf[from, to). */
function countChars (buf: Uint8Array, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) if ((buf[i] & 0xc0) !== 0x80) n++
  return n
}

/** Where a multi-byte character that the buffer does not finish begins (buf.byteLength if none). */
function incompleteTail (buf: Uint8Array): number {
  const end = buf.byteLength
  for (let back = 1; back <= 3 && back <= end; back++) {
    const b = buf[end - back]
    if ((b & 0xc0) === 0x80) continue // continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1
    return need > back ? end - back : end
  }
  return end
}

/** Offset of the first byte that breaks UTF-8 (the buffer is known to be invalid). */
function firstInvalid (buf: Uint8Array): number {
  let i = 0
  while (i < buf.byteLength) {
    const b = buf[i]
    let need: number
    let min: number
    if (b < 0x80) { i++; continue }
    if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80 } else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800 } else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000 } else return i
    let cp = b & (0x3f >> need)
    for (let k = 1; k <= need; k++) {
      const c = buf[i + k]
      if (c === undefined || (c & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (c & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i
    i += need + 1
  }
  return buf.byteLength
}

/** The delimiter of a CSV file: a tab for `.tsv`, else a comma. */
export function delimiterOf (path: string): string {
  return extname(path).toLowerCase() === '.tsv' ? '\t' : ','
}

/** Opens `path` and reads its header; `rows` then yields the data rows. `name` is how errors name the file. */
export async function openSource (path: string, options: { name?: string, format?: InputFormat } = {}): Promise<RowSource> {
  const file = options.name ?? basename(path)
  const format = options.format ?? formatOf(path)
  if (format === 'parquet') throw new TypeError('openSource reads CSV and JSON lines; Parquet is read by DuckDB')
  const guard = new Utf8Guard(file)
  const input = createReadStream(path, { highWaterMark: 256 * 1024 })
  input.on('error', err => { guard.destroy(err) })
  input.pipe(guard)
  const delimiter = delimiterOf(path)
  const it = format === 'csv' ? csvRows(guard, file, delimiter) : jsonRows(guard, file)
  const first = await it.next()
  if (first.done === true) {
    if (guard.bytes === 0) throw new EmptyInputError({ file, line: 1, column: 1 }, 'the file is empty')
    throw new EmptyInputError({ file, line: 1, column: 1 }, 'no header: the file holds only blank lines')
  }
  const header = first.value as { columns: string[] }
  const rows = (async function * (): AsyncGenerator<SourceRow> {
    try {
      for (;;) {
        const r = await it.next()
        if (r.done === true) return
        yield r.value as SourceRow
      }
    } finally {
      input.destroy()
      guard.destroy()
    }
  })()
  return { file, format, columns: header.columns, rows, bytesRead: () => guard.bytes }
}

function checkHeader (names: string[], file: string): void {
  const seen = new Map<string, number>()
  names.forEach((name, i) => {
    if (name.length === 0) throw new MalformedInputError({ file, line: 1, column: i + 1 }, `column ${i + 1} has no name in the header`)
    const before = seen.get(name)
    if (before !== undefined) throw new MalformedInputError({ file, line: 1, column: i + 1 }, `column "${name}" appears twice in the header (columns ${before + 1} and ${i + 1})`)
    seen.set(name, i)
  })
}

/** First yields `{ columns }`, then rows. */
async function * csvRows (input: NodeJS.ReadableStream, file: string, delimiter: string): AsyncGenerator<{ columns: string[] } | SourceRow> {
  const parser = parse({ info: true, relax_column_count: true, skip_empty_lines: true, bom: true, delimiter })
  input.on('error', err => { parser.destroy(err) })
  input.pipe(parser)
  let columns: string[] | null = null
  try {
    for await (const item of parser as AsyncIterable<{ record: string[], info: { lines: number } }>) {
      const { record, info } = item
      // the record ends on info.lines; quoted line breaks inside it moved it down
      let breaks = 0
      for (const field of record) for (let i = field.indexOf('\n'); i !== -1; i = field.indexOf('\n', i + 1)) breaks++
      const line = info.lines - breaks
      if (columns === null) {
        columns = record.map(s => s.trim())
        checkHeader(columns, file)
        yield { columns }
        continue
      }
      if (record.length !== columns.length) {
        if (record.length < columns.length) {
          throw new RaggedRowError({ file, line, column: record.length + 1 }, `row has ${record.length} field${record.length === 1 ? '' : 's'}, the header has ${columns.length}: column ${record.length + 1} ("${columns[record.length]}") is missing`)
        }
        throw new RaggedRowError({ file, line, column: columns.length + 1 }, `row has ${record.length} fields, the header has ${columns.length}: field ${columns.length + 1} has no column`)
      }
      const values = new Array<string | null>(record.length)
      for (let i = 0; i < record.length; i++) values[i] = isMissing(record[i]) ? null : record[i]
      yield { values, line }
    }
  } catch (err) {
    throw translateCsvError(err, file)
  }
}

function translateCsvError (err: unknown, file: string): unknown {
  const e = err as { code?: string, lines?: number, column?: number, message?: string }
  if (typeof e.code === 'string' && e.code.startsWith('CSV_') || e.code === 'INVALID_OPENING_QUOTE') {
    const what = (e.message ?? 'malformed CSV').replace(/^[A-Z][a-z]+( [A-Z][a-z]+)*: /, '')
    return new MalformedInputError({ file, line: e.lines ?? 1, column: typeof e.column === 'number' ? e.column + 1 : 1 }, `malformed CSV: ${what}`)
  }
  return err
}

/** First yields `{ columns }` (the keys of the first object), then rows. */
async function * jsonRows (input: NodeJS.ReadableStream, file: string): AsyncGenerator<{ columns: string[] } | SourceRow> {
  const lines = createInterface({ input: input as NodeJS.ReadableStream & { setEncoding: (e: string) => void }, crlfDelay: Infinity })
  let columns: string[] | null = null
  let index: Map<string, number> | null = null
  let line = 0
  for await (let text of lines) {
    line++
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    if (text.trim().length === 0) continue
    if (text.length > MAX_JSON_LINE_CHARS) throw new MalformedInputError({ file, line, column: 1 }, `line longer than ${MAX_JSON_LINE_CHARS} characters`)
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (err) {
      throw new MalformedInputError({ file, line, column: jsonErrorOffset(text) + 1 }, `not JSON: ${(err as Error).message}`)
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedInputError({ file, line, column: 1 }, 'each line must be one JSON object')
    const obj = value as Record<string, unknown>
    if (columns === null || index === null) {
      columns = Object.keys(obj)
      if (columns.length === 0) throw new MalformedInputError({ file, line, column: 1 }, 'the first object has no keys to take columns from')
      index = new Map(columns.map((c, i) => [c, i]))
      yield { columns }
    }
    const values = new Array<string | null>(columns.length).fill(null)
    for (const [key, v] of Object.entries(obj)) {
      const i = index.get(key)
      if (i === undefined) throw new RaggedRowError({ file, line, column: key }, `key "${key}" is not a column (the first line has ${columns.map(c => JSON.stringify(c)).join(', ')})`)
      if (v === null) continue
      if (typeof v === 'string') values[i] = isMissing(v) ? null : v
      else if (typeof v === 'number' && Number.isFinite(v)) values[i] = String(v)
      else if (typeof v === 'boolean') values[i] = String(v)
      else throw new MalformedInputError({ file, line, column: key }, `"${key}" is ${Array.isArray(v) ? 'an array' : typeof v}: values must be strings, numbers, booleans or null`)
    }
    yield { values, line }
  }
}

/**
 * Where JSON text first goes wrong (a character offset), for error messages:
 * JSON.parse does not always say. Walks the grammar without building values.
 */
export function jsonErrorOffset (text: string): number {
  let i = 0
  const fail = (): never => { throw i }
  const ws = (): void => { while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++ }
  const literal = (word: string): void => {
    for (let k = 0; k < word.length; k++, i++) if (text[i] !== word[k]) fail()
  }
  const string = (): void => {
    i++ // the opening quote
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x22) { i++; return }
      if (c < 0x20) fail()
      if (c === 0x5c) {
        i++
        const e = text[i]
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) { i += k; fail() }
          i += 5
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++
        else fail()
        continue
      }
      i++
    }
    fail()
  }
  const number = (): void => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400))
    if (m === null || m[0].length === 0) fail()
    i += (m as RegExpExecArray)[0].length
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === '{') {
      i++; ws()
      if (text[i] === '}') { i++; return }
      for (;;) {
        ws()
        if (text[i] !== '"') fail()
        string(); ws()
        if (text[i] !== ':') fail()
        i++
        value(); ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === '}') { i++; return }
        fail()
      }
    } else if (c === '[') {
      i++; ws()
      if (text[i] === ']') { i++; return }
      for (;;) {
        value(); ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === ']') { i++; return }
        fail()
      }
    } else if (c === '"') string()
    else if (c === 't') literal('true')
    else if (c === 'f') literal('false')
    else if (c === 'n') literal('null')
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) number()
    else fail()
  }
  try {
    value(); ws()
    if (i < text.length) fail()
    return Math.max(0, text.length - 1)
  } catch (at) {
    if (typeof at === 'number') return Math.min(at, Math.max(0, text.length - 1))
    throw at
  }
}
