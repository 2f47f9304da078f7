/**
 * The test split for evaluation, read from the test shard without holding
 * the file: its sha256 is checked in 1 MiB reads, then only the record
 * batches that hold sampled rows are read (synchronously: data sets load
 * synchronously), each as a small IPC stream of the file's schema, its
 * dictionaries and that one batch. Memory is the sample plus one batch.
 *
 * The sample: every row when the features fit in MAX_TEST_BYTES, else that
 * many rows spread evenly over the shard (the same rows on every peer).
 */
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { Message, Table, tableFromIPC } from 'apache-arrow'
import type { Schema } from 'apache-arrow'
import { Footer } from 'apache-arrow/ipc/metadata/file'
import type { FileBlock } from 'apache-arrow/ipc/metadata/file'
import type { Examples } from '../dataset.ts'
import type { DatasetDescription } from '../imported/description.ts'
import { CorruptDatasetError, IncompleteDatasetError } from '../imported/errors.ts'
import { shardPath } from '../imported/store.ts'
import { FeatureTransform } from '../imported/transform.ts'

/** The test split kept in memory for evaluation, at most (an evenly spread sample of the test shard beyond it). */
export const MAX_TEST_BYTES = 24 * 1024 * 1024
const HASH_CHUNK_BYTES = 1024 * 1024
/** An Arrow IPC file starts with `ARROW1` padded to 8 bytes and ends with the footer, its int32 length and `ARROW1`. */
const MAGIC = 'ARROW1'
const HEAD_BYTES = 8
const TAIL_BYTES = 10
/** Footers of the importer's shards are a few kB (one block per 8192 rows); beyond this the file is not ours. */
const MAX_FOOTER_BYTES = 16 * 1024 * 1024
/** End of an IPC stream: continuation marker, zero length. */
const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])

export function loadTestSample (dir: string, d: DatasetDescription, maxBytes = MAX_TEST_BYTES): Examples {
  const shard = d.test
  const path = shardPath(dir, shard)
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IncompleteDatasetError(`the test shard (${shard.file}) is not in ${dir}: fetch it from a peer that has it`, [shard.sha256])
    throw err
  }
  try {
    const size = fstatSync(fd).size
    const corrupt = (what: string): CorruptDatasetError => new CorruptDatasetError(`${path}: ${what}`)
    verifySync(fd, size, shard.sha256, path)
    if (size < HEAD_BYTES + TAIL_BYTES) throw corrupt('too short for an Arrow IPC file')
    const tail = readAt(fd, size - TAIL_BYTES, TAIL_BYTES)
    if (Buffer.from(tail.subarray(4)).toString('latin1') !== MAGIC) throw corrupt('not an Arrow IPC file')
    const footerBytes = new DataView(tail.buffer, tail.byteOffset).getInt32(0, true)
    if (footerBytes <= 0 || footerBytes > Math.min(MAX_FOOTER_BYTES, size - HEAD_BYTES - TAIL_BYTES)) throw corrupt(`footer of ${footerBytes} bytes`)
    const footer = Footer.decode(readAt(fd, size - TAIL_BYTES - footerBytes, footerBytes))
    // the schema is the footer's (Arrow JS writes no schema message at the start of a file)
    const head = [schemaMessage(footer.schema), ...[...footer.dictionaryBatches()].map(b => readBlock(fd, b, size, corrupt))]
    const blocks = [...footer.recordBatches()]
    const rows = blocks.map(b => batchRows(fd, b, size, corrupt))
    const total = rows.reduce((a, b) => a + b, 0)
    if (total !== shard.rows) throw corrupt(`${total} rows, the description says ${shard.rows}`)

    const transform = new FeatureTransform(d)
    const f = d.features
    const keep = Math.min(total, Math.max(1, Math.floor(maxBytes / (4 * Math.max(1, f)))))
    const x = new Float32Array(keep * f)
    const y = new Uint8Array(keep)
    let at = 0
    let row = 0
    blocks.forEach((block, k) => {
      const picked: number[] = []
      for (let i = 0; i < rows[k]; i++, row++) {
        // row r is kept when floor(r · keep / total) steps up: exactly `keep` rows, evenly spread
        if (Math.floor((row + 1) * keep / total) > Math.floor(row * keep / total)) picked.push(i)
      }
      if (picked.length === 0) return
      const table = tableFromIPC(Buffer.concat([...head, readBlock(fd, block, size, corrupt), EOS]))
      const part = transform.examples(new Table(table.batches))
      for (const i of picked) {
        x.set(part.x.subarray(i * f, (i + 1) * f), at * f)
        y[at] = part.y[i]
        at++
      }
    })
    return { x, y, n: at, features: f }
  } finally {
    closeSync(fd)
  }
}

/** A schema as an encapsulated IPC message: continuation marker, metadata length, metadata padded to 8 bytes. */
function schemaMessage (schema: Schema): Uint8Array {
  const meta = Message.encode(Message.from(schema))
  const padded = (meta.byteLength + 8 + 7) & ~7
  const out = new Uint8Array(padded)
  const view = new DataView(out.buffer)
  view.setInt32(0, -1, true)
  view.setInt32(4, padded - 8, true)
  out.set(meta, 8)
  return out
}

function readAt (fd: number, position: number, length: number): Uint8Array {
  const out = Buffer.alloc(length)
  let done = 0
  while (done < length) {
    const n = readSync(fd, out, done, length - done, position + done)
    if (n === 0) break
    done += n
  }
  return out.subarray(0, done)
}

/** A whole encapsulated message (prefix, metadata, body). */
function readBlock (fd: number, b: FileBlock, size: number, corrupt: (what: string) => Error): Uint8Array {
  const length = b.metaDataLength + b.bodyLength
  if (b.offset < HEAD_BYTES || b.offset + length > size) throw corrupt(`a block at ${b.offset} of ${length} bytes is outside the file`)
  return readAt(fd, b.offset, length)
}

/** A record batch's row count, from its metadata only. */
function batchRows (fd: number, b: FileBlock, size: number, corrupt: (what: string) => Error): number {
  if (b.offset < HEAD_BYTES || b.metaDataLength < 8 || b.offset + b.metaDataLength > size) throw corrupt(`a record batch at ${b.offset} is outside the file`)
  const meta = readAt(fd, b.offset, b.metaDataLength)
  const length = new DataView(meta.buffer, meta.byteOffset).getInt32(4, true)
  if (length <= 0 || length > b.metaDataLength - 8) throw corrupt(`a record batch's metadata at ${b.offset} is malformed`)
  const message = Message.decode(meta.subarray(8, 8 + length))
  if (!message.isRecordBatch()) throw corrupt(`the block at ${b.offset} is not a record batch`)
  return message.header().length
}

/** Checks a file's sha256 in 1 MiB reads. */
function verifySync (fd: number, size: number, sha256: string, path: string): void {
  const hash = createHash('sha256')
  const chunk = Buffer.alloc(Math.min(HASH_CHUNK_BYTES, Math.max(1, size)))
  for (let at = 0; at < size;) {
    const n = readSync(fd, chunk, 0, chunk.length, at)
    if (n === 0) break
    hash.update(chunk.subarray(0, n))
    at += n
  }
  const actual = hash.digest('hex')
  if (actual !== sha256) throw new CorruptDatasetError(`${path}: sha256 is ${actual}, the description says ${sha256}`)
}
