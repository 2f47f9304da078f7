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
 * numeric → Float64, categorical and label → Dictionary<Int32, Utf8> whose
 * dictionary is the description's categories (so the index is the one-hot
 * position or class index), text → Utf8. No nulls: missing values were
 * dropped or filled before writing.
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs'
import {
  AsyncByteQueue, Dictionary, Field, Float64, Int32, RecordBatch, RecordBatchFileWriter, Schema, Struct, Utf8,
  makeData, tableFromIPC, vectorFromArray
} from 'apache-arrow'
import type { Data, Table, Vector } from 'apache-arrow'
import type { ColumnDescription } from './description.ts'
import type { CleanRow } from './stats.ts'

/** Rows per record batch: large enough that per-batch overhead vanishes, small enough to bound what a writer buffers. */
export const BATCH_ROWS = 8192
/** A writer also flushes once its buffered text reaches this many characters (long documents). */
export const BATCH_TEXT_CHARS = 4 * 1024 * 1024

type StoredColumn = Pick<ColumnDescription, 'name' | 'type' | 'categories'>

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
        fields.push(new Field(c.name, new Float64(), false))
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

  /** A record batch from column buffers (one per stored column). */
  batch (buffers: ColumnBuffers, length: number): RecordBatch {
    const fields = this.schema.fields
    const children: Data[] = fields.map((f, k) => {
      const c = this.columns[k]
      const buf = buffers[k]
      if (c.type === 'numeric') return makeData({ type: new Float64(), length, nullCount: 0, data: (buf as Float64Array).slice(0, length) })
      if (c.type === 'text') return vectorFromArray((buf as string[]).slice(0, length), new Utf8()).data[0]
      return makeData({ type: f.type as Dictionary<Utf8, Int32>, length, nullCount: 0, data: (buf as Int32Array).slice(0, length), dictionary: this.dictionaries[k] as Vector<Utf8> })
    })
    return new RecordBatch(this.schema, makeData({ type: new Struct(fields), length, nullCount: 0, children }))
  }
}

type ColumnBuffers = Array<Float64Array | Int32Array | string[]>

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

/**
 * Appends cleaned rows to one shard file, a record batch at a time; memory is
 * one batch. Writes are synchronous: an import writes several shards in
 * turn, and a blocking write keeps each one's memory bounded without
 * back-pressure plumbing.
 */
export class ShardWriter {
  readonly path: string
  private readonly shape: ShardSchema
  private readonly fd: number
  private readonly sink: FileSink
  private readonly writer: RecordBatchFileWriter
  private readonly buffers: ColumnBuffers
  private buffered = 0
  private textChars = 0
  rows = 0

  constructor (path: string, shape: ShardSchema) {
    this.path = path
    this.shape = shape
    this.fd = openSync(path, 'wx')
    this.sink = new FileSink(this.fd)
    this.writer = new RecordBatchFileWriter()
    this.writer.reset(this.sink as unknown as Parameters<RecordBatchFileWriter['reset']>[0], shape.schema)
    this.buffers = shape.columns.map(c => c.type === 'numeric' ? new Float64Array(BATCH_ROWS) : c.type === 'text' ? [] : new Int32Array(BATCH_ROWS))
  }

  /** `row` is indexed like the description's columns (see CleanRow). */
  append (row: CleanRow): void {
    const i = this.buffered
    const { source, columns } = this.shape
    for (let k = 0; k < columns.length; k++) {
      const v = row[source[k]]
      const buf = this.buffers[k]
      if (columns[k].type === 'text') {
        const s = v as string
        ;(buf as string[])[i] = s
        this.textChars += s.length
      } else {
        (buf as Float64Array | Int32Array)[i] = v as number
      }
    }
    this.buffered++
    this.rows++
    if (this.buffered === BATCH_ROWS || this.textChars >= BATCH_TEXT_CHARS) this.flush()
  }

  private flush (): void {
    if (this.buffered === 0) return
    this.writer.write(this.shape.batch(this.buffers, this.buffered))
    for (const b of this.buffers) if (Array.isArray(b)) b.length = 0
    this.buffered = 0
    this.textChars = 0
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

/** The float64 values of a numeric column (see dictionaryIndices on the chunks' offsets). */
export function float64Values (vec: Vector): Float64Array {
  const out = new Float64Array(vec.length)
  let at = 0
  for (const data of vec.data) {
    out.set((data.values as Float64Array).subarray(0, data.length), at)
    at += data.length
  }
  return out
}
