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
import { closeSync, fstatSync, openSync } from 'node:fs'
import { Table, tableFromIPC } from 'apache-arrow'
import type { Examples } from '../types.ts'
import type { DatasetDescription } from '../imported/description.ts'
import { CorruptDatasetError, IncompleteDatasetError } from '../imported/errors.ts'
import { shardPath } from '../imported/store.ts'
import { FeatureTransform } from '../imported/transform.ts'
import { EOS, readBlock, readLayout, schemaMessage, verifySync } from './ipc-file.ts'

/** The test split kept in memory for evaluation, at most (an evenly spread sample of the test shard beyond it). */
export const MAX_TEST_BYTES = 24 * 1024 * 1024

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
    const { footer, blocks, rows } = readLayout(fd, size, corrupt)
    // the schema is the footer's (Arrow JS writes no schema message at the start of a file)
    const head = [schemaMessage(footer.schema), ...[...footer.dictionaryBatches()].map(b => readBlock(fd, b, size, corrupt))]
    const total = rows.reduce((a, b) => a + b, 0)
    if (total !== shard.rows) throw corrupt(`${total} rows, the description says ${shard.rows}`)

    const transform = new FeatureTransform(d)
    const f = d.features
    const keep = Math.min(total, Math.max(1, Math.floor(maxBytes / (4 * Math.max(1, f)))))
    const x = new Float32Array(keep * f)
    const y = new Uint8Array(keep)
    let at = 0
    let row = 0
    /** One record batch's features at a time, reused: the garbage would otherwise be the whole test shard's. */
    let scratch: Float32Array | null = null
    blocks.forEach((block, k) => {
      const picked: number[] = []
      for (let i = 0; i < rows[k]; i++, row++) {
        // row r is kept when floor(r · keep / total) steps up: exactly `keep` rows, evenly spread
        if (Math.floor((row + 1) * keep / total) > Math.floor(row * keep / total)) picked.push(i)
      }
      if (picked.length === 0) return
      const table = tableFromIPC(Buffer.concat([...head, readBlock(fd, block, size, corrupt), EOS]))
      scratch = scratch !== null && scratch.length >= rows[k] * f ? scratch : new Float32Array(rows[k] * f)
      const part = transform.examples(new Table(table.batches), scratch)
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

