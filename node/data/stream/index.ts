/**
 * Streaming reads of imported data sets: training batches come from the
 * shard files on disk, decoded a window of rows at a time (in a worker
 * thread) with the next window read ahead, so that a peer's memory does not
 * grow with the data set; the order of each pass is a deterministic
 * block-and-window shuffle (as MosaicML's streaming data sets), resumable
 * from (pass, cursor). The test split is a bounded sample (test-split.ts).
 *
 * Files: rows.ts (row sets as ranges), order.ts (a pass's order),
 * streamed.ts (the reader and its read-ahead), decoder.ts and
 * decode-worker.ts (blocks to features, in a worker or inline),
 * shard-file.ts (one shard file, random access), ipc-file.ts (an Arrow IPC
 * file's footer and batch sizes), test-split.ts.
 *
 * Where this folder sits among the others: docs/architecture.md (node/data).
 *
 * @example
 * const d = loadDataset('ds-0123456789abcdef', { dataDir, ensureShard: async id => { await fetchShard(id) } })
 * const reader = d.train.batches(job.seed, d.classes)
 * const batch = await reader.read(RowSet.fromRanges([[0, 5000]]), pass, cursor, 32)   // batch.rows: which rows
 */
export { RowSet } from './rows.ts'
export type { RowRange } from './rows.ts'
export { PassOrder, blocksOf } from './order.ts'
export type { Block, Window } from './order.ts'
export { BLOCKS_PER_WINDOW, BLOCK_BYTES, StreamedBatches, StreamedRows, blockRowsFor } from './streamed.ts'
export { MAX_TEST_BYTES, loadTestSample } from './test-split.ts'
export type { StreamedRowsInit } from './streamed.ts'
