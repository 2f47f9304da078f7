/**
 * Streaming reads of imported data sets: training batches come from the
 * shard files on disk, decoded a block of rows at a time (in a worker
 * thread) with the next blocks read ahead, so that a peer's memory does not
 * grow with the data set; which rows come next is the swarm's data position
 * (node/data/epoch.ts: blocks shuffled per epoch, rows drawn from a window of
 * a few blocks, as MosaicML's streaming data sets). The test split is a
 * bounded sample (test-split.ts).
 *
 * Files: rows.ts (row sets as ranges), order.ts (blocks),
 * streamed.ts (the reader and its read-ahead), decoder.ts and
 * decode-worker.ts (blocks to features, in a worker or inline),
 * shard-file.ts (one shard file, random access), ipc-file.ts (an Arrow IPC
 * file's footer and batch sizes), test-split.ts.
 *
 * Where this folder sits among the others: docs/architecture.md (node/data).
 *
 * @example
 * const d = loadDataset('ds-0123456789abcdef', { dataDir, ensureShard: async id => { await fetchShard(id) } })
 * const reader = d.train.batches(d.classes)
 * const batch = await reader.read(epoch.next(mine, 32))   // the rows the data position (node/data/epoch.ts) draws
 * reader.prefetch(epoch.upcoming(mine))                    // the blocks of the next batches, after the read
 */
export { RowSet } from './rows.ts'
export type { RowRange } from './rows.ts'
export { BLOCK_BYTES, blockOf, blockRowsFor, blocksOf } from './order.ts'
export type { Block } from './order.ts'
export { BLOCKS_PER_WINDOW, StreamedBatches, StreamedRows } from './streamed.ts'
export { MAX_TEST_BYTES, loadTestSample } from './test-split.ts'
export type { StreamedRowsInit } from './streamed.ts'
