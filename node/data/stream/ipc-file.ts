/**
 * Reading an Arrow IPC file's layout without its data: the footer (schema,
 * dictionary and record-batch blocks) and each record batch's row count
 * from its metadata alone, by positioned reads of a few kB. Every length
 * read from the file is checked against the file's size.
 */
import { createHash } from 'node:crypto'
import { readSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { Message } from 'apache-arrow'
import type { Schema } from 'apache-arrow'
import { Footer } from 'apache-arrow/ipc/metadata/file'
import type { FileBlock } from 'apache-arrow/ipc/metadata/file'
import { CorruptDatasetError } from '../imported/errors.ts'

/** An Arrow IPC file starts with `ARROW1` padded to 8 bytes and ends with the footer, its int32 length and `ARROW1`. */
const MAGIC = 'ARROW1'
const HEAD_BYTES = 8
const TAIL_BYTES = 10
/** Footers of the importer's shards are a few kB (one block per 8192 rows); beyond this the file is not ours. */
const MAX_FOOTER_BYTES = 16 * 1024 * 1024
/** How much of a file one hashing read holds (one buffer, reused). */
const HASH_CHUNK_BYTES = 1024 * 1024
/** End of an IPC stream: continuation marker, zero length. */
export const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])

export interface IpcLayout {
  footer: Footer
  /** The record batches' blocks, in file order, and their row counts. */
  blocks: FileBlock[]
  rows: number[]
}

/** The layout of the IPC file open as `fd` (`size` bytes); `corrupt` names what is wrong. */
export function readLayout (fd: number, size: number, corrupt: (what: string) => Error): IpcLayout {
  if (size < HEAD_BYTES + TAIL_BYTES) throw corrupt('too short for an Arrow IPC file')
  const tail = readAt(fd, size - TAIL_BYTES, TAIL_BYTES)
  if (Buffer.from(tail.subarray(4)).toString('latin1') !== MAGIC) throw corrupt('not an Arrow IPC file')
  const footerBytes = new DataView(tail.buffer, tail.byteOffset).getInt32(0, true)
  if (footerBytes <= 0 || footerBytes > Math.min(MAX_FOOTER_BYTES, size - HEAD_BYTES - TAIL_BYTES)) throw corrupt(`footer of ${footerBytes} bytes`)
  let footer: Footer
  try {
    footer = Footer.decode(readAt(fd, size - TAIL_BYTES - footerBytes, footerBytes))
  } catch (err) {
    throw corrupt(`unreadable footer (${(err as Error).message})`)
  }
  const blocks = [...footer.recordBatches()]
  return { footer, blocks, rows: blocks.map(b => batchRows(fd, b, size, corrupt)) }
}

export function readAt (fd: number, position: number, length: number): Uint8Array {
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
export function readBlock (fd: number, b: FileBlock, size: number, corrupt: (what: string) => Error): Uint8Array {
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

/** A schema as an encapsulated IPC message: continuation marker, metadata length, metadata padded to 8 bytes. */
export function schemaMessage (schema: Schema): Uint8Array {
  const meta = Message.encode(Message.from(schema))
  const padded = (meta.byteLength + 8 + 7) & ~7
  const out = new Uint8Array(padded)
  const view = new DataView(out.buffer)
  view.setInt32(0, -1, true)
  view.setInt32(4, padded - 8, true)
  out.set(meta, 8)
  return out
}

/** Checks a file's sha256 in 1 MiB reads into one buffer. */
export function verifySync (fd: number, size: number, sha256: string, path: string): void {
  const hash = createHash('sha256')
  const chunk = Buffer.alloc(Math.min(HASH_CHUNK_BYTES, Math.max(1, size)))
  for (let at = 0; at < size;) {
    const n = readSync(fd, chunk, 0, chunk.length, at)
    if (n === 0) break
    hash.update(chunk.subarray(0, n))
    at += n
  }
  check(hash.digest('hex'), sha256, path)
}

/** The same, with asynchronous reads (the thread is free between chunks). */
export async function verify (handle: FileHandle, size: number, sha256: string, path: string): Promise<void> {
  const hash = createHash('sha256')
  const chunk = Buffer.alloc(Math.min(HASH_CHUNK_BYTES, Math.max(1, size)))
  for (let at = 0; at < size;) {
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, at)
    if (bytesRead === 0) break
    hash.update(chunk.subarray(0, bytesRead))
    at += bytesRead
  }
  check(hash.digest('hex'), sha256, path)
}

function check (actual: string, sha256: string, path: string): void {
  if (actual !== sha256) throw new CorruptDatasetError(`${path}: sha256 is ${actual}, the description says ${sha256}`)
}
