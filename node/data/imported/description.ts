/**
 * The data-set description (`dataset.json`): what every peer needs to read
 * the shards and turn them into features the same way. It holds the schema
 * (columns and their types, categories in index order), how the data was
 * cleaned and will be transformed, the normalisation statistics, and each
 * shard's rows, bytes and sha256.
 *
 * A data set is content-addressed: its id is `ds-` and the first 16 hex digits
 * of the sha256 of the description's canonical JSON (keys sorted, no spaces).
 * The shards' hashes are in the description, so the id covers every byte of
 * the data set; importing the same file with the same options again gives the
 * same id.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { canonicalJson } from '../../../protocols/job/index.ts'

export const DATASET_FORMAT = 'peer-dataset/1'
export const DESCRIPTION_FILE = 'dataset.json'
/** A description is small (the largest part is the text columns' document frequencies); this bounds reading one from disk or a peer. */
export const MAX_DESCRIPTION_BYTES = 8 * 1024 * 1024

export const COLUMN_TYPES = ['label', 'numeric', 'categorical', 'text', 'ignored'] as const
export type ColumnType = typeof COLUMN_TYPES[number]
export const NORMALIZE_MODES = ['zscore', 'minmax', 'none'] as const
export type NormalizeMode = typeof NORMALIZE_MODES[number]
export const MISSING_MODES = ['drop', 'fill'] as const
export type MissingMode = typeof MISSING_MODES[number]

const hex64 = z.string().regex(/^[0-9a-f]{64}$/)
const count = z.number().int().nonnegative()

const columnSchema = z.object({
  name: z.string().min(1).max(1024),
  type: z.enum(COLUMN_TYPES),
  /** Label and categorical columns: the values in index order (class index, one-hot position). */
  categories: z.array(z.string()).max(100_000).optional(),
  /** With `missing: fill`, what a missing value became (the training rows' mean, their most frequent category, or ''). */
  fill: z.union([z.number(), z.string()]).optional(),
  /**
   * Numeric columns: the training rows' mean from the first pass. Statistics are sums of (x − shift), so
   * that the variance of a column far from zero does not cancel away in floating point.
   */
  shift: z.number().optional(),
  /**
   * Numeric columns of small integers stored narrower than float64 (language-model tokens); absent: float64.
   * Readers give the same values either way.
   */
  storage: z.enum(['uint8', 'uint16', 'int32']).optional(),
  /** Input rows where the value was missing (counted before any row was dropped). */
  missing: count,
  /** Why a column is ignored, when it was not asked for. */
  note: z.string().max(1024).optional()
}).strict()
export type ColumnDescription = z.infer<typeof columnSchema>

const shardSchema = z.object({
  index: count,
  /** File name inside the data set's directory: `<sha256>.arrow`. */
  file: z.string().regex(/^[0-9a-f]{64}\.arrow$/),
  sha256: hex64,
  bytes: count,
  rows: count
}).strict()
export type ShardFileDescription = z.infer<typeof shardSchema>

const numericStatsSchema = z.object({
  n: count,
  /** Σ (x − shift) and Σ (x − shift)² over the training rows. */
  sum: z.number(),
  sumsq: z.number(),
  min: z.number().nullable(),
  max: z.number().nullable(),
  mean: z.number().nullable(),
  std: z.number().nullable()
}).strict()

export const statsSchema = z.object({
  rows: count,
  numeric: z.record(z.string(), numericStatsSchema),
  /** Per category, in index order: training rows holding it. */
  categorical: z.record(z.string(), z.array(count)),
  /** Per text column: training documents, and per bucket how many of them touch it. */
  text: z.record(z.string(), z.object({ docs: count, df: z.array(count) }).strict())
}).strict()
export type StatsDescription = z.infer<typeof statsSchema>

export const descriptionSchema = z.object({
  format: z.literal(DATASET_FORMAT),
  /** The label column's name; its categories are the classes. */
  label: z.string().min(1),
  classes: z.array(z.string()).min(2).max(256),
  columns: z.array(columnSchema).min(1).max(10_000),
  transform: z.object({
    normalize: z.enum(NORMALIZE_MODES),
    missing: z.enum(MISSING_MODES),
    /** Hash buckets per text column. */
    buckets: z.number().int().min(256).max(65536),
    /** Share of the kept rows held out as the test shard, and the seed that picks them. */
    testFraction: z.number().min(0).max(0.9),
    splitSeed: z.number().int().min(0).max(2 ** 32 - 1)
  }).strict(),
  /** Width of a feature row. */
  features: z.number().int().positive(),
  counts: z.object({
    rowsRead: count,
    droppedMissing: count,
    droppedDuplicates: count,
    rowsWritten: count,
    trainRows: count,
    testRows: count
  }).strict(),
  /** Statistics of the training shards (a sum over shards; see stats.ts). */
  stats: statsSchema,
  /** Training shards, in index order. */
  shards: z.array(shardSchema).min(1).max(65536),
  /** The held-out rows, one shard every peer reads for evaluation. */
  test: shardSchema,
  /**
   * A language-model data set (`peer dataset import --lm`, see lm-import.ts): each row is `context + 1`
   * consecutive byte tokens (the columns t0 … t<context>), its class the last one.
   */
  lm: z.object({ context: z.number().int().min(1).max(8192), tokens: z.literal('bytes') }).strict().optional()
}).strict()
export type DatasetDescription = z.infer<typeof descriptionSchema>

/** The data set's content address. */
export function datasetId (description: DatasetDescription): string {
  return `ds-${createHash('sha256').update(canonicalJson(description)).digest('hex').slice(0, 16)}`
}

/** Validates a parsed description; the error names the first bad field. */
export function parseDescription (value: unknown): DatasetDescription {
  const r = descriptionSchema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new TypeError(`invalid data set description: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return r.data
}

/** Columns that become features (not the label, not ignored), in order. */
export function featureColumns (d: Pick<DatasetDescription, 'columns'>): ColumnDescription[] {
  return d.columns.filter(c => c.type === 'numeric' || c.type === 'categorical' || c.type === 'text')
}

/** Width each column takes in a feature row. */
export function columnWidth (c: ColumnDescription, buckets: number): number {
  if (c.type === 'numeric') return 1
  if (c.type === 'categorical') return c.categories?.length ?? 0
  if (c.type === 'text') return buckets
  return 0
}
