/**
 * A job's data, resolved for training: the data set it names (built in, or
 * imported and, where this data dir lacks it, fetched from the swarm), its
 * shards as the manifest shares them, and the training rows of the shards a
 * peer owns.
 *
 * @example
 * const data = await resolveJobData({ dataDir, node: network.node, peers: () => ids, logger }, job)
 * trainer.setRows(data.rowsOf(manifest.mine()))
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Job } from '../../protocols/job/index.ts'
import { fetchDataset } from '../shard-transfer/index.ts'
import type { ShardNode } from '../shard-transfer/index.ts'
import { loadDataset } from './dataset.ts'
import type { Dataset } from './dataset.ts'
import { datasetsRoot, isDatasetId, readDescription } from './imported/index.ts'
import { cutShards, importedShardSpecs, rowsOf } from './shards.ts'
import type { ShardSpec } from './shards.ts'
import type { RowSet } from './stream/index.ts'

export interface JobDataComponents {
  dataDir: string
  /** The shard protocol's dialer: where an imported data set this data dir lacks is fetched from. */
  node: ShardNode
  /** The peers to fetch from (the connected ones). */
  peers: () => string[]
  logger: Logger
}

export interface JobData {
  dataset: Dataset
  /** The job's shards over `dataset.train`, in index order. */
  shards: ShardSpec[]
  /** The training rows of the shards with these ids (ids not among `shards` are ignored). */
  rowsOf: (ids: Iterable<string>) => RowSet
  /** The shards as the manifest records them when it creates the job. */
  records: () => Map<string, { index: number, rows: number, hash: string }>
}

/** Loads the job's data set (fetching an imported one it lacks) and cuts it into the job's shards. */
export async function resolveJobData (components: JobDataComponents, job: Pick<Job, 'dataset' | 'shards'>): Promise<JobData> {
  const dataset = await loadJobDataset(components, job.dataset)
  const shards = isDatasetId(job.dataset)
    ? importedShardSpecs(readDescription(join(datasetsRoot(components.dataDir), job.dataset), job.dataset))
    : cutShards(dataset.train, job.shards)
  return {
    dataset,
    shards,
    rowsOf: ids => rowsOf(shards, ids),
    records: () => new Map(shards.map(s => [s.id, { index: s.index, rows: s.rows, hash: s.hash }]))
  }
}

/**
 * The job's data set: built in, or imported (`ds-…`). An imported data set
 * this peer does not hold (whole) is fetched from the swarm's members,
 * shard by shard, each checked against its hash.
 */
export async function loadJobDataset (components: JobDataComponents, name: string): Promise<Dataset> {
  const { dataDir, logger } = components
  try {
    return loadDataset(name, { dataDir })
  } catch (err) {
    if (!isDatasetId(name) || !['IncompleteDatasetError', 'DatasetNotFoundError'].includes((err as Error).name)) throw err
  }
  const peers = components.peers()
  logger.info({ dataset: name, peers: peers.length }, 'fetching the data set from the swarm')
  const r = await fetchDataset(components.node, peers, name, dataDir)
  logger.info({ dataset: name, ms: r.ms, bytes: r.bytes }, 'data set fetched')
  return loadDataset(name, { dataDir })
}
