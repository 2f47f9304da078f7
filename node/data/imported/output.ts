/**
 * What both importers (importer.ts: tables; lm-import.ts: text for language
 * models) share once the rows are decided: the checks on the input file and
 * the split options, the work dir inside the datasets root, the shard
 * writers, and publishing (the description written, the work dir renamed
 * into place, so that nothing half-written is ever read).
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import type { Stats } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../common/process.ts'
import { ShardSchema, ShardWriter } from './arrow.ts'
import type { CleanColumns, TextSink, WrittenShard } from './arrow.ts'
import { DocumentFrequencies } from './text-df.ts'
import { DATASET_FORMAT, DESCRIPTION_FILE, datasetId } from './description.ts'
import type { ColumnDescription, DatasetDescription, ShardFileDescription } from './description.ts'
import { DataInputError } from './errors.ts'
import { isTestRow } from './engine.ts'
import { StatsAccumulator, StatsLayout, combineAll, statsToDescription } from './stats.ts'
import type { CleanRow } from './stats.ts'

export const DEFAULT_SHARDS = 8
export const MAX_SHARDS = 1024
export const DEFAULT_TEST_FRACTION = 0.15
/** The same split seed as the built-in data sets: held-out rows never depend on a job. */
export const DEFAULT_SPLIT_SEED = 0x5eed

/** RangeError for a shard count or test fraction out of range. */
export function checkSplitOptions (shards: number, testFraction: number): void {
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) throw new RangeError(`shards must be 1 … ${MAX_SHARDS}`)
  if (!(testFraction >= 0 && testFraction <= 0.9)) throw new RangeError('testFraction must be in [0, 0.9]')
}

/** The input file's stat, or a DataInputError naming `name` (no such file, not a file, unreadable). */
export function statInput (path: string, name: string): Stats {
  let st: Stats
  try {
    st = statSync(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new DataInputError({ file: name, line: 1, column: 1 }, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`)
  }
  if (!st.isFile()) throw new DataInputError({ file: name, line: 1, column: 1 }, 'not a file')
  return st
}

/** An import's work dir, `<root>/.tmp-<pid>-<random>`: never read as a data set; renamed into place or removed. */
export class WorkDir {
  readonly root: string
  readonly path: string
  private readonly rootExisted: boolean

  private constructor (root: string, path: string, rootExisted: boolean) {
    this.root = root
    this.path = path
    this.rootExisted = rootExisted
  }

  /** Creates one under `root` (and `root` itself if needed), removing those of dead imports first. */
  static open (root: string): WorkDir {
    const rootExisted = existsSync(root)
    mkdirSync(root, { recursive: true })
    removeStaleTemps(root)
    const path = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
    mkdirSync(path)
    return new WorkDir(root, path, rootExisted)
  }

  /** Removes it (and the root, where this import created it). */
  discard (): void {
    rmSync(this.path, { recursive: true, force: true })
    if (!this.rootExisted) try { rmdirSync(this.root) } catch {}
  }
}

/** Work directories of imports whose process is gone (killed mid-write): never read, safe to remove. */
export function removeStaleTemps (root: string): void {
  for (const name of readdirSync(root)) {
    const m = /^\.tmp-(\d+)-[0-9a-f]+$/.exec(name)
    if (m !== null && !pidAlive(Number(m[1]))) rmSync(join(root, name), { recursive: true, force: true })
  }
}

export function countTrainRows (kept: number, seed: number, fraction: number): number {
  let n = 0
  for (let k = 0; k < kept; k++) if (!isTestRow(k, seed, fraction)) n++
  return n
}

/** The description's fields an importer decides; publish adds the counts of the split, the statistics and the shards. */
export type DescriptionHead = Omit<DatasetDescription, 'format' | 'counts' | 'stats' | 'shards' | 'test'>
export type RowCounts = Pick<DatasetDescription['counts'], 'rowsRead' | 'droppedMissing' | 'droppedDuplicates' | 'rowsWritten'>

export interface Published {
  description: DatasetDescription
  datasetId: string
  dir: string
  /** The same data set was already there (same content, same id): nothing new was written. */
  existing: boolean
  /** Bytes of every shard file. */
  bytes: number
}

/**
 * Finishes the shards, writes the description into the work dir and renames
 * it to `<root>/<id>` (or removes it, where that data set is already there).
 */
export async function publish (work: WorkDir, out: DatasetWriter, head: DescriptionHead, counts: RowCounts): Promise<Published> {
  const { files, trainRows, stats, layout } = await out.finish()
  const test = { ...files[files.length - 1], index: 0 }
  const shards = files.slice(0, -1)
  const { lm, ...rest } = head
  const description: DatasetDescription = {
    format: DATASET_FORMAT,
    ...rest,
    counts: { ...counts, trainRows, testRows: test.rows },
    stats: statsToDescription(layout, stats),
    shards,
    test,
    ...(lm !== undefined ? { lm } : {})
  }
  const id = datasetId(description)
  writeFileSync(join(work.path, DESCRIPTION_FILE), describeJson(description))
  const dir = join(work.root, id)
  const existing = existsSync(dir)
  if (existing) rmSync(work.path, { recursive: true, force: true })
  else renameSync(work.path, dir)
  return { description, datasetId: id, dir, existing, bytes: files.reduce((n, f) => n + f.bytes, 0) }
}

/** The shard files of one import, written as rows arrive: round robin over the training shards, and the test shard. */
export class DatasetWriter {
  readonly layout: StatsLayout
  private readonly writers: ShardWriter[] = []
  private readonly test: ShardWriter
  private readonly stats: StatsAccumulator[]
  private readonly shardCount: number
  private readonly df: DocumentFrequencies | null
  private trainIndex = 0
  /** addColumns's scratch: the rows by writer, each row's writer, where each writer's rows start. */
  private order = new Uint32Array(0)
  private to = new Uint16Array(0)
  private readonly counts: Uint32Array
  rows = 0

  constructor (dir: string, described: ColumnDescription[], shardCount: number, buckets: number) {
    const shape = new ShardSchema(described)
    this.layout = new StatsLayout({ columns: described, buckets })
    this.shardCount = shardCount
    this.counts = new Uint32Array(shardCount + 2)
    this.stats = Array.from({ length: shardCount }, () => new StatsAccumulator(this.layout))
    // the training shards' document frequencies: slot s · T + j for shard s and text column j
    const text = this.layout.text
    this.df = text.length > 0 ? new DocumentFrequencies(buckets, shardCount * text.length) : null
    const sink = (s: number): TextSink | null => this.df === null
      ? null
      : (column, data, offsets, length) => { (this.df as DocumentFrequencies).add({ slot: s * text.length + text.findIndex(t => t.column === column), data, offsets, length }) }
    try {
      for (let s = 0; s < shardCount; s++) this.writers.push(new ShardWriter(join(dir, `shard-${s}.tmp`), shape, this.stats[s], sink(s)))
      this.test = new ShardWriter(join(dir, 'test.tmp'), shape)
    } catch (err) {
      this.abort()
      throw err
    }
    this.writers.push(this.test)
  }

  add (clean: CleanRow, test: boolean): void {
    this.rows++
    this.next(test).append(clean)
  }

  /** The next rows: those at `rows` of `columns`, in order; `isTest(k)` says whether the k-th row of the data set is a test row. */
  addColumns (columns: CleanColumns, rows: ArrayLike<number>, isTest: (k: number) => boolean): void {
    // each row's writer (the training shards round robin, then the test shard), then each writer's rows in order,
    // a column at a time (a writer's rows are what decide its file, not the order between writers)
    const n = rows.length
    const writers = this.writers.length
    if (this.order.length < n) {
      this.order = new Uint32Array(n)
      this.to = new Uint16Array(n)
    }
    const { order, to, counts } = this
    counts.fill(0)
    for (let j = 0; j < n; j++) {
      const w = isTest(this.rows++) ? writers - 1 : this.trainIndex++ % this.shardCount
      to[j] = w
      counts[w + 1]++
    }
    for (let w = 0; w < writers; w++) counts[w + 1] += counts[w]
    const starts = counts.slice(0, writers)
    for (let j = 0; j < n; j++) order[starts[to[j]]++] = rows[j]
    for (let w = 0; w < writers; w++) if (counts[w + 1] > counts[w]) this.writers[w].appendRows(columns, order.subarray(counts[w], counts[w + 1]))
  }

  private next (test: boolean): ShardWriter {
    return test ? this.test : this.writers[this.trainIndex++ % this.shardCount]
  }

  /** Finishes every file and renames it to `<sha256>.arrow`; the test shard comes last. */
  async finish (): Promise<{ files: ShardFileDescription[], trainRows: number, stats: Float64Array, layout: StatsLayout }> {
    const written: WrittenShard[] = this.writers.map(w => w.finish())
    if (this.df !== null) {
      const counts = await this.df.finish()
      const text = this.layout.text
      for (let s = 0; s < this.shardCount; s++) {
        const v = this.stats[s].vector
        text.forEach((t, j) => {
          const df = counts[s * text.length + j]
          for (let b = 0; b < this.layout.buckets; b++) v[t.at + 1 + b] += df[b]
        })
      }
    }
    const files = written.map((w, index) => {
      const file = `${w.sha256}.arrow`
      renameSync(w.path, join(w.path, '..', file))
      return { index, file, sha256: w.sha256, bytes: w.bytes, rows: w.rows }
    })
    return { files, trainRows: this.trainIndex, stats: combineAll(this.layout, this.stats.map(s => s.vector)), layout: this.layout }
  }

  abort (): void {
    this.df?.close()
    for (const w of this.writers) w.abort()
  }
}


/** The description as readable JSON: indented, but arrays of numbers on one line (the document frequencies are long). */
export function describeJson (d: DatasetDescription): string {
  return `${JSON.stringify(d, null, 2).replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, inner: string) => `[${inner.replace(/\s+/g, '')}]`)}\n`
}
