/**
 * Shards as Apache Arrow IPC files (the "Feather v2" file format).
 *
 * Why Arrow IPC: it is a standard, documented columnar format that pandas,
 * Polars, DuckDB, R and Spark read directly (`pyarrow.ipc.open_file`,
 * `pl.read_ipc`), so a shard is inspectable with ordinary tools; columns keep
 * their types (float64, dictionary-encoded categories with their names,
 * UTF-8 text) without a private layout; and it is written batch by batch, so
 * an import streams. Reading needs no decoding step: the buffers are the
 * column arrays. Parquet would compress better, but needs heavier (native or
 * WebAssembly) dependencies to write from Node; shards travel between peers
 * on a LAN, where size matters less than simplicity.
 *
 * A shard's columns are the description's non-ignored columns, in order:
 * numeric → Float64 (or, where the description's `storage` says so, Uint8,
 * Uint16 or Int32: language-model tokens), categorical and label → Dictionary<Int32, Utf8> whose
 * dictionary is the description's categories (so the index is the one-hot
 * position or class index), text → Utf8. No nulls: missing values were
 * dropped or filled before writing.
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs'
import {
  AsyncByteQueue, Dictionary, Field, Float64, Int32, RecordBatch, RecordBatchFileWriter, Schema, Struct, Uint16, Uint8, Utf8,
  makeData, tableFromIPC, vectorFromArray
} from 'apache-arrow'
import type { Data, DataType, Table, Vector } from 'apache-arrow'
import type { ColumnDescription } from './description.ts'
import type { CleanRow, StatsAccumulator } from './stats.ts'
import type { BatchColumns, NumericArray, Utf8Column } from './columns.ts'
export type { BatchColumns, NumericArray, Utf8Column } from './columns.ts'

/** Rows per record batch: large enough that per-batch overhead vanishes, small enough to bound what a writer buffers. */
export const BATCH_ROWS = 8192
/** A writer also flushes once its buffered text reaches this many bytes (long documents). */
export const BATCH_TEXT_BYTES = 4 * 1024 * 1024

type StoredColumn = Pick<ColumnDescription, 'name' | 'type' | 'categories' | 'storage'>

/**
 * Cleaned rows as columns, indexed like the description's columns (null where
 * ignored): numeric → a number array, categorical and label → Int32Array of
 * category indices, text → the rows' UTF-8 bytes in one buffer (Utf8Column).
 */
export type CleanColumns = ReadonlyArray<ArrayLike<number> | Utf8Column | null>

/** Receives a written batch's text column (`column`: its place among the description's columns) as UTF-8 bytes and offsets. */
export type TextSink = (column: number, data: Uint8Array, offsets: Int32Array, length: number) => void

function numericType (storage: StoredColumn['storage']): DataType {
  return storage === 'uint8' ? new Uint8() : storage === 'uint16' ? new Uint16() : storage === 'int32' ? new Int32() : new Float64()
}

function numericArray (storage: StoredColumn['storage'], n: number): NumericArray {
  return storage === 'uint8' ? new Uint8Array(n) : storage === 'uint16' ? new Uint16Array(n) : storage === 'int32' ? new Int32Array(n) : new Float64Array(n)
}

/** The Arrow schema of a shard and the dictionaries of its categorical columns. */
export class ShardSchema {
  readonly columns: StoredColumn[]
  /** Index of each stored column in the description's column list. */
  readonly source: number[]
  readonly schema: Schema
  private readonly dictionaries: Array<Vector | null>

  constructor (columns: readonly StoredColumn[]) {
    this.columns = []
    this.source = []
    const fields: Field[] = []
    this.dictionaries = []
    columns.forEach((c, i) => {
      if (c.type === 'ignored') return
      this.columns.push(c)
      this.source.push(i)
      if (c.type === 'numeric') {
        fields.push(new Field(c.name, numericType(c.storage), false))
        this.dictionaries.push(null)
      } else if (c.type === 'text') {
        fields.push(new Field(c.name, new Utf8(), false))
        this.dictionaries.push(null)
      } else {
        fields.push(new Field(c.name, new Dictionary(new Utf8(), new Int32(), i), false))
        this.dictionaries.push(vectorFromArray(c.categories ?? [], new Utf8()))
      }
    })
    this.schema = new Schema(fields)
  }

  /** Empty buffers for one batch. */
  buffers (): BatchColumns {
    return this.columns.map(c => c.type === 'numeric' ? numericArray(c.storage, BATCH_ROWS) : c.type === 'text' ? { offsets: new Int32Array(BATCH_ROWS + 1), data: new Uint8Array(64 * 1024) } : new Int32Array(BATCH_ROWS))
  }

  /** A record batch of the first `length` rows of `buffers` (copied: the buffers are reused). */
  batch (buffers: BatchColumns, length: number): RecordBatch {
    const fields = this.schema.fields
    const children: Data[] = fields.map((f, k) => {
      const c = this.columns[k]
      const buf = buffers[k]
      if (c.type === 'numeric') return makeData({ type: f.type, length, nullCount: 0, data: (buf as NumericArray).slice(0, length) } as never)
      if (c.type === 'text') {
        const { offsets, data } = buf as Utf8Column
        return makeData({ type: new Utf8(), length, nullCount: 0, valueOffsets: offsets.slice(0, length + 1), data: data.slice(0, offsets[length]) })
      }
      return makeData({ type: f.type as Dictionary<Utf8, Int32>, length, nullCount: 0, data: (buf as Int32Array).slice(0, length), dictionary: this.dictionaries[k] as Vector<Utf8> })
    })
    return new RecordBatch(this.schema, makeData({ type: new Struct(fields), length, nullCount: 0, children }))
  }
}

/** Receives the IPC bytes as the writer produces them: straight to the file, and through the hash. */
class FileSink extends AsyncByteQueue {
  readonly fd: number
  readonly hash: Hash
  bytes = 0

  constructor (fd: number) {
    super()
    this.fd = fd
    this.hash = createHash('sha256')
  }

  override write (value: ArrayBufferView | ArrayBuffer | string): void {
    const bytes = typeof value === 'string' ? Buffer.from(value) : ArrayBuffer.isView(value) ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(value)
    if (bytes.byteLength === 0) return
    let at = 0
    while (at < bytes.byteLength) at += writeSync(this.fd, bytes, at, bytes.byteLength - at)
    this.hash.update(bytes)
    this.bytes += bytes.byteLength
  }
}

export interface WrittenShard {
  path: string
  rows: number
  bytes: number
  sha256: string
}

const encoder = new TextEncoder()

/**
 * Appends cleaned rows to one shard file, a record batch at a time, into
 * column buffers; memory is one batch. Each full batch goes to `stats` (when
 * given) and then to the file. Writes are synchronous: an import writes
 * several shards in turn, and a blocking write keeps each one's memory
 * bounded without back-pressure plumbing.
 */
export class ShardWriter {
  readonly path: string
  private readonly shape: ShardSchema
  private readonly stats: StatsAccumulator | null
  private readonly textSink: TextSink | null
  private readonly fd: number
  private readonly sink: FileSink
  private readonly writer: RecordBatchFileWriter
  private readonly buffers: BatchColumns
  /** Per stored column: 0 numeric, 1 categorical or label, 2 text. */
  private readonly kinds: Uint8Array
  private buffered = 0
  rows = 0

  /** `textSink`: where each written batch's text goes (its own buffers), for document frequencies counted elsewhere; the stats then count none. */
  constructor (path: string, shape: ShardSchema, stats: StatsAccumulator | null = null, textSink: TextSink | null = null) {
    this.path = path
    this.shape = shape
    this.stats = stats
    this.textSink = textSink
    this.fd = openSync(path, 'wx')
    this.sink = new FileSink(this.fd)
    this.writer = new RecordBatchFileWriter()
    this.writer.reset(this.sink as unknown as Parameters<RecordBatchFileWriter['reset']>[0], shape.schema)
    this.buffers = shape.buffers()
    this.kinds = Uint8Array.from(shape.columns, c => c.type === 'numeric' ? 0 : c.type === 'text' ? 2 : 1)
  }

  /** `row` is indexed like the description's columns (see CleanRow). */
  append (row: CleanRow): void {
    const i = this.buffered
    const { source } = this.shape
    for (let k = 0; k < source.length; k++) {
      const v = row[source[k]]
      if (this.kinds[k] === 2) {
        const s = v as string
        const t = this.textRoom(k, s.length * 3)
        t.offsets[i + 1] = t.offsets[i] + encoder.encodeInto(s, t.data.subarray(t.offsets[i])).written
      } else {
        (this.buffers[k] as NumericArray)[i] = v as number
      }
    }
    this.appended()
  }

  /**
   * The rows at `rows` of `columns` (indexed like the description's columns), in order: the same batches as
   * appending them one by one (`append`'s rule: a batch ends at BATCH_ROWS rows or once its text reaches
   * BATCH_TEXT_BYTES), copied a column at a time up to each batch's end.
   */
  appendRows (columns: CleanColumns, rows: ArrayLike<number>): void {
    const { source } = this.shape
    const kinds = this.kinds
    // the text columns' offsets (most tables have one or none)
    const texts: Int32Array[] = []
    for (let k = 0; k < kinds.length; k++) if (kinds[k] === 2) texts.push((columns[source[k]] as Utf8Column).offsets)
    let j = 0
    while (j < rows.length) {
      // how many rows go in before the batch is full: BATCH_ROWS of them, or the row that brings the text to
      // BATCH_TEXT_BYTES (appended's rule, row by row)
      const room = Math.min(BATCH_ROWS - this.buffered, rows.length - j)
      let m = room
      let full = this.buffered + room === BATCH_ROWS
      if (texts.length > 0) {
        let text = this.textBytes()
        for (let t = 0; t < room; t++) {
          const i = rows[j + t]
          for (let c = 0; c < texts.length; c++) text += texts[c][i + 1] - texts[c][i]
          if (text >= BATCH_TEXT_BYTES) {
            m = t + 1
            full = true
            break
          }
        }
      }
      const at = this.buffered
      for (let k = 0; k < kinds.length; k++) {
        if (kinds[k] === 2) gatherText(columns[source[k]] as Utf8Column, rows, j, m, this.textRoomFor(k, columns[source[k]] as Utf8Column, rows, j, m), at)
        else gather(columns[source[k]] as ArrayLike<number>, rows, j, m, this.buffers[k] as NumericArray, at)
      }
      this.buffered += m
      this.rows += m
      j += m
      if (full) this.flush()
    }
  }

  /** Text column k's buffer, with room for rows[j, j + m) of `from`. */
  private textRoomFor (k: number, from: Utf8Column, rows: ArrayLike<number>, j: number, m: number): Utf8Column {
    let more = 0
    for (let t = j; t < j + m; t++) more += from.offsets[rows[t] + 1] - from.offsets[rows[t]]
    return this.textRoom(k, more)
  }

  /** Text column k's buffer with room for `more` bytes after the buffered rows. */
  private textRoom (k: number, more: number): Utf8Column {
    const t = this.buffers[k] as Utf8Column
    const need = t.offsets[this.buffered] + more
    if (need > t.data.length) {
      const grown = new Uint8Array(Math.max(need, t.data.length * 2))
      grown.set(t.data.subarray(0, t.offsets[this.buffered]))
      t.data = grown
    }
    return t
  }

  private appended (): void {
    this.buffered++
    this.rows++
    if (this.buffered === BATCH_ROWS || this.textBytes() >= BATCH_TEXT_BYTES) this.flush()
  }

  private textBytes (): number {
    let n = 0
    for (let k = 0; k < this.kinds.length; k++) if (this.kinds[k] === 2) n += (this.buffers[k] as Utf8Column).offsets[this.buffered]
    return n
  }

  private flush (): void {
    const n = this.buffered
    if (n === 0) return
    this.stats?.addBatch(this.shape.source, this.buffers, n, this.textSink === null)
    const batch = this.shape.batch(this.buffers, n)
    this.writer.write(batch)
    this.buffered = 0
    if (this.textSink === null) return
    // the batch's copies of the text, written and no longer needed here
    for (let k = 0; k < this.kinds.length; k++) {
      if (this.kinds[k] !== 2) continue
      const data = batch.getChildAt(k)?.data[0] as Data<Utf8>
      this.textSink(this.shape.source[k], data.values, data.valueOffsets, n)
    }
  }

  /** Writes the last batch and the file footer, closes the file. */
  finish (): WrittenShard {
    this.flush()
    this.writer.finish()
    closeSync(this.fd)
    return { path: this.path, rows: this.rows, bytes: this.sink.bytes, sha256: this.sink.hash.digest('hex') }
  }

  /** Closes the file without finishing it (the caller removes it). */
  abort (): void {
    try { closeSync(this.fd) } catch {}
  }
}

/** `to[at + t] = from[rows[j + t]]` for t < m. */
function gather (from: ArrayLike<number>, rows: ArrayLike<number>, j: number, m: number, to: NumericArray, at: number): void {
  for (let t = 0; t < m; t++) to[at + t] = from[rows[j + t]]
}

/** The text of rows[j, j + m) of `from` after the first `at` rows of `to` (which has room). */
function gatherText (from: Utf8Column, rows: ArrayLike<number>, j: number, m: number, to: Utf8Column, at: number): void {
  const { data, offsets } = from
  const out = to.data
  const outOffsets = to.offsets
  let end = outOffsets[at]
  for (let t = 0; t < m; t++) {
    const i = rows[j + t]
    const a = offsets[i]
    const b = offsets[i + 1]
    // short values byte by byte: cheaper than a view to copy from
    if (b - a <= 64) for (let x = a; x < b; x++) out[end++] = data[x]
    else {
      out.set(data.subarray(a, b), end)
      end += b - a
    }
    outOffsets[at + t + 1] = end
  }
}

/** A shard file's bytes as an Arrow table. */
export function readShard (path: string): Table {
  return tableFromIPC(readFileSync(path))
}

/**
 * Row i's dictionary index in a dictionary-encoded column, read from the chunks without decoding strings.
 * (A chunk's `values` start at its first row: slicing a Data moves the values buffer along, and `offset` is
 * left for the validity bitmap.)
 */
export function dictionaryIndices (vec: Vector): Int32Array {
  const out = new Int32Array(vec.length)
  let at = 0
  for (const data of vec.data) {
    out.set((data.values as Int32Array).subarray(0, data.length), at)
    at += data.length
  }
  return out
}

/** The values of a numeric column as float64, whatever its stored type (see dictionaryIndices on the chunks' offsets). */
export function float64Values (vec: Vector): Float64Array {
  const out = new Float64Array(vec.length)
  let at = 0
  for (const data of vec.data) {
    out.set((data.values as NumericArray).subarray(0, data.length), at)
    at += data.length
  }
  return out
}
