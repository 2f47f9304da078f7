/**
 * Data sets users bring: `peer dataset import` turns a CSV, JSON-lines or
 * Parquet file (read through DuckDB, see importer.ts) into a content-addressed data set (`<data-dir>/datasets/<id>/`: Arrow IPC
 * shards and a `dataset.json` description), which a job names by its id and
 * the trainer loads like a built-in one.
 *
 * Where this folder sits among the others: docs/architecture.md (node/data).
 *
 * @example
 * const report = await importDataset('mails.csv', { label: 'spam', text: ['body'], outDir: datasetsRoot(dataDir) })
 * const dataset = loadDataset(report.datasetId, { dataDir })   // node/data/dataset.ts
 *
 * Swarm-wide statistics (a map over shards, a sum over peers; see stats.ts):
 * const layout = statsLayoutOf(description)
 * const mine = new Map(owned.map(i => [i, partialStats(layout, rowsOfShard(i))]))
 * const sum = await ring.run({ …, vector: toRingVector(layout, description.shards.length, mine) })
 * const stats = finalizeStats(layout, fromRingSum(layout, description.shards.length, sum.sum))
 */
import type { DatasetDescription } from './description.ts'
import { StatsLayout } from './stats.ts'

export { importLmText, DEFAULT_LM_CONTEXT, MAX_LM_CONTEXT, MAX_LM_TEXT_BYTES } from './lm-import.ts'
export type { LmImportOptions } from './lm-import.ts'
export { importDataset, DEFAULT_BUCKETS, DEFAULT_SHARDS, DEFAULT_TEST_FRACTION, DEFAULT_SPLIT_SEED, MAX_SHARDS } from './importer.ts'
export { DEFAULT_MEMORY_LIMIT } from './importer.ts'
export type { ColumnReport, EngineName, EngineReport, ImportOptions, ImportProgress, ImportReport } from './importer.ts'
export {
  DATASET_FORMAT, DESCRIPTION_FILE, MAX_DESCRIPTION_BYTES, MISSING_MODES, NORMALIZE_MODES, datasetId, parseDescription
} from './description.ts'
export type { ColumnDescription, DatasetDescription, MissingMode, NormalizeMode, ShardFileDescription } from './description.ts'
export {
  DATASETS_DIR, allShards, checkDescription, datasetsRoot, isDatasetId, listDatasets, loadImportedDataset, loadImportedShard,
  missingShards, readDescription, readVerifiedShard, shardPath, shardRanges
} from './store.ts'
export type { DatasetEntry, DenseDataset } from './store.ts'
export {
  StatsAccumulator, StatsLayout, combineAll, combineStats, emptyStats, finalizeStats, fromRingSum, partialStats,
  partialStatsOfTable, ringVectorLength, statsFromDescription, toRingVector
} from './stats.ts'
export type { CleanRow, FinalStats, NumericStats, StatsSchema } from './stats.ts'
export { FeatureTransform } from './transform.ts'
export { readShard } from './arrow.ts'
export {
  CorruptDatasetError, DataInputError, DatasetNotFoundError, DatasetTooLargeError, EmptyInputError, EncodingError,
  IncompleteDatasetError, MalformedInputError, MissingColumnError, RaggedRowError, StatsCoverageError, UnusableInputError
} from './errors.ts'

/** The statistics layout of a data set (the same on every peer). */
export function statsLayoutOf (d: DatasetDescription): StatsLayout {
  return new StatsLayout({ columns: d.columns, buckets: d.transform.buckets })
}
