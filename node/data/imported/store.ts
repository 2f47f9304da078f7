/**
 * Imported data sets in a data dir: `<data-dir>/datasets/<id>/` holds
 * `dataset.json` and the shards, each named `<sha256>.arrow`.
 *
 * A directory whose name is not a data set id (the import's `.tmp-…` work
 * directories) is never read as a data set. A description whose id does not
 * match its directory, or a shard whose bytes do not match its hash, is
 * reported as corrupt and never loaded.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { tableFromIPC } from 'apache-arrow'
import type { Table } from 'apache-arrow'
import { IMPORTED_DATASET_ID } from '../../../protocols/job/index.ts'
import type { Dataset, Examples } from '../types.ts'
import { DESCRIPTION_FILE, MAX_DESCRIPTION_BYTES, datasetId, parseDescription } from './description.ts'
import type { DatasetDescription, ShardFileDescription } from './description.ts'
import { CorruptDatasetError, DatasetNotFoundError, DatasetTooLargeError, IncompleteDatasetError } from './errors.ts'
import { FeatureTransform } from './transform.ts'

/** Under the data dir. */
export const DATASETS_DIR = 'datasets'
/** The largest dense feature matrix (train and test, float32) a process builds: beyond it, use fewer text buckets or fewer rows. */
export const MAX_DENSE_BYTES = 2 * 1024 ** 3

export function datasetsRoot (dataDir: string): string {
  return join(dataDir, DATASETS_DIR)
}

export function isDatasetId (name: string): boolean {
  return IMPORTED_DATASET_ID.test(name)
}

/** Reads and checks a data set's description; `id` (default: the directory's name) must be its content address. */
export function readDescription (dir: string, id?: string): DatasetDescription {
  const path = join(dir, DESCRIPTION_FILE)
  let text: string
  try {
    if (statSync(path).size > MAX_DESCRIPTION_BYTES) throw new CorruptDatasetError(`${path}: larger than ${MAX_DESCRIPTION_BYTES} bytes`)
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetNotFoundError(`no data set at ${dir} (no ${DESCRIPTION_FILE})`)
    throw err
  }
  return checkDescription(text, id ?? dir.split(/[\\/]/).filter(Boolean).pop() ?? '', path)
}

/** Parses description text and checks that it hashes to `id`. */
export function checkDescription (text: string, id: string, where: string): DatasetDescription {
  let description: DatasetDescription
  try {
    description = parseDescription(JSON.parse(text))
  } catch (err) {
    throw new CorruptDatasetError(`${where}: ${(err as Error).message}`)
  }
  const actual = datasetId(description)
  if (actual !== id) throw new CorruptDatasetError(`${where}: the description hashes to ${actual}, not ${id}`)
  return description
}

export function shardPath (dir: string, shard: ShardFileDescription): string {
  return join(dir, shard.file)
}

/** Every shard file of a data set, training shards then the test shard. */
export function allShards (d: DatasetDescription): ShardFileDescription[] {
  return [...d.shards, d.test]
}

/** Shards whose files are not in `dir` (yet). */
export function missingShards (dir: string, d: DatasetDescription): ShardFileDescription[] {
  return allShards(d).filter(s => !existsSync(shardPath(dir, s)))
}

export interface DatasetEntry {
  id: string
  dir: string
  label: string
  classes: number
  features: number
  rows: number
  trainRows: number
  testRows: number
  shards: number
  /** Shard files present here (training and test); a peer may hold only some. */
  shardsPresent: number
  bytes: number
  columns: Array<{ name: string, type: string }>
  /** Set when the directory is not a readable data set. */
  error?: string
}

/** The data sets under a datasets root (`<data-dir>/datasets`), sorted by id. */
export function listDatasets (root: string): DatasetEntry[] {
  let names: string[]
  try {
    names = readdirSync(root)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: DatasetEntry[] = []
  for (const id of names.filter(isDatasetId).sort()) {
    const dir = join(root, id)
    try {
      const d = readDescription(dir, id)
      const shards = allShards(d)
      out.push({
        id,
        dir,
        label: d.label,
        classes: d.classes.length,
        features: d.features,
        rows: d.counts.rowsWritten,
        trainRows: d.counts.trainRows,
        testRows: d.counts.testRows,
        shards: d.shards.length,
        shardsPresent: shards.filter(s => existsSync(shardPath(dir, s))).length,
        bytes: shards.reduce((n, s) => n + s.bytes, 0),
        columns: d.columns.map(c => ({ name: c.name, type: c.type }))
      })
    } catch (err) {
      out.push({ id, dir, label: '', classes: 0, features: 0, rows: 0, trainRows: 0, testRows: 0, shards: 0, shardsPresent: 0, bytes: 0, columns: [], error: (err as Error).message })
    }
  }
  return out
}

/** Reads a shard file, checks its sha256, and decodes it. */
export function readVerifiedShard (dir: string, shard: ShardFileDescription): Table {
  const path = shardPath(dir, shard)
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IncompleteDatasetError(`shard ${shard.index} (${shard.file}) is not in ${dir}: fetch it from a peer that has it`, [shard.sha256])
    throw err
  }
  const hash = createHash('sha256').update(bytes).digest('hex')
  if (hash !== shard.sha256) throw new CorruptDatasetError(`${path}: sha256 is ${hash}, the description says ${shard.sha256}`)
  return tableFromIPC(bytes)
}

/** One training shard's rows as features (index into `description.shards`). */
export function loadImportedShard (dir: string, d: DatasetDescription, index: number, transform: FeatureTransform = new FeatureTransform(d)): Examples {
  const shard = d.shards[index]
  if (shard === undefined) throw new RangeError(`no shard ${index} (the data set has ${d.shards.length})`)
  return transform.examples(readVerifiedShard(dir, shard))
}

/** A data set with its training rows in memory, as dense arrays. */
export interface DenseDataset extends Omit<Dataset, 'train'> {
  train: Examples
}

/**
 * An imported data set whole in memory, as dense arrays (for tools and tests;
 * the trainer streams the training rows instead: `loadDataset`): the training
 * shards' rows in shard order (shard i's rows are `shardRanges(d)[i]`), and
 * the whole test shard. Every shard must be here and match its hash.
 */
export function loadImportedDataset (dir: string, id?: string): DenseDataset {
  const d = readDescription(dir, id)
  const name = id ?? datasetId(d)
  const missing = missingShards(dir, d)
  if (missing.length > 0) throw new IncompleteDatasetError(`data set ${name}: ${missing.length} of ${d.shards.length + 1} shards are not in ${dir} yet: fetch them from a peer that has them`, missing.map(s => s.sha256))
  const rows = d.counts.trainRows + d.counts.testRows
  if (rows * d.features * 4 > MAX_DENSE_BYTES) {
    throw new DatasetTooLargeError(`data set ${name}: ${rows} rows × ${d.features} features is ${Math.ceil(rows * d.features * 4 / 1024 ** 2)} MiB as float32, over ${MAX_DENSE_BYTES / 1024 ** 2} MiB: import it with fewer text --buckets`)
  }
  const transform = new FeatureTransform(d)
  const train = concatExamples(d.shards.map(s => transform.examples(readVerifiedShard(dir, s))), d.features)
  const test = transform.examples(readVerifiedShard(dir, d.test))
  return { name, inputShape: [d.features], features: d.features, classes: d.classes.length, train, test }
}

/** Row ranges `[start, end)` of each training shard within the loaded data set's training rows. */
export function shardRanges (d: DatasetDescription): Array<{ index: number, start: number, end: number, sha256: string }> {
  let start = 0
  return d.shards.map(s => {
    const r = { index: s.index, start, end: start + s.rows, sha256: s.sha256 }
    start += s.rows
    return r
  })
}

function concatExamples (parts: Examples[], features: number): Examples {
  const n = parts.reduce((a, p) => a + p.n, 0)
  const x = new Float32Array(n * features)
  const y = new Uint8Array(n)
  let at = 0
  for (const p of parts) {
    x.set(p.x, at * features)
    y.set(p.y, at)
    at += p.n
  }
  return { x, y, n, features }
}
