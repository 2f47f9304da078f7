/**
 * A job's data, resolved for training: the data set it names (built in, or
 * imported and, where this data dir lacks it, fetched from the swarm), its
 * shards as the manifest shares them, and the training rows of the shards a
 * peer owns.
 *
 * Of an imported data set a peer holds only some shards (node/shard-transfer,
 * "Where shards live"): here its description and test split, fetched if
 * missing; its training shards follow its claims (the replication service
 * fetches them), `rowsOf` gives only rows of shards whose files are here, and
 * a batch that still finds a shard missing asks `ensureShard` for it.
 *
 * @example
 * const data = await resolveJobData({ dataDir, node: network.node, peers: () => ids, logger }, job)
 * trainer.setRows(data.rowsOf(manifest.mine()))
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Job } from '../../protocols/job/index.ts'
import { fetchDataset } from '../shard-transfer/index.ts'
import type { ShardNode } from '../shard-transfer/index.ts'
import { loadDataset } from './dataset.ts'
import type { Dataset } from './dataset.ts'
import { datasetsRoot, isDatasetId, readDescription, shardPath } from './imported/index.ts'
import { cutShards, importedShardSpecs, rowsOf } from './shards.ts'
import type { ShardSpec } from './shards.ts'
import type { DatasetDescription } from './imported/index.ts'
import type { RowSet } from './stream/index.ts'

export interface JobDataComponents {
  dataDir: string
  /** The shard protocol's dialer: where an imported data set this data dir lacks is fetched from. */
  node: ShardNode
  /** The peers to fetch from (the connected ones). */
  peers: () => string[]
  logger: Logger
  /**
   * An imported data set: makes a training shard's file present (the replication service's `ensureShard`).
   * With it only the description and the test split are fetched at start; without it, the whole data set.
   */
  ensureShard?: (shardId: string) => Promise<void>
}

export interface JobData {
  dataset: Dataset
  /** The job's shards over `dataset.train`, in index order. */
  shards: ShardSpec[]
  /**
   * The training rows of the shards with these ids (ids not among `shards` are ignored). Of an imported data
   * set fetched shard by shard (`ensureShard` given), only the shards whose files are here now.
   */
  rowsOf: (ids: Iterable<string>) => RowSet
  /** An imported data set's description (null for a built-in one). */
  description: DatasetDescription | null
  /** The shards as the manifest records them when it creates the job. */
  records: () => Map<string, { index: number, rows: number, hash: string }>
}

/** Loads the job's data set (fetching an imported one it lacks) and cuts it into the job's shards. */
export async function resolveJobData (components: JobDataComponents, job: Pick<Job, 'dataset' | 'shards'>): Promise<JobData> {
  const dataset = await loadJobDataset(components, job.dataset)
  const dir = join(datasetsRoot(components.dataDir), job.dataset)
  const description = isDatasetId(job.dataset) ? readDescription(dir, job.dataset) : null
  const shards = description !== null ? importedShardSpecs(description) : cutShards(dataset.train, job.shards)
  const here = (id: string): boolean => {
    const file = description?.shards[shards.find(s => s.id === id)?.index ?? -1]
    return file !== undefined && existsSync(shardPath(dir, file))
  }
  return {
    dataset,
    shards,
    description,
    rowsOf: ids => rowsOf(shards, description === null || components.ensureShard === undefined ? ids : [...ids].filter(here)),
    records: () => new Map(shards.map(s => [s.id, { index: s.index, rows: s.rows, hash: s.hash }]))
  }
}

/**
 * The job's data set: built in, or imported (`ds-…`). Of an imported data set
 * this peer lacks, the description and test split (with `ensureShard`: the
 * training shards come later, one by one) or every shard (without) are
 * fetched from the swarm's members, each checked against its hash.
 */
export async function loadJobDataset (components: JobDataComponents, name: string): Promise<Dataset> {
  const { dataDir, logger, ensureShard } = components
  try {
    return loadDataset(name, { dataDir, ensureShard })
  } catch (err) {
    if (!isDatasetId(name) || !['IncompleteDatasetError', 'DatasetNotFoundError'].includes((err as Error).name)) throw err
  }
  const peers = components.peers()
  logger.info({ dataset: name, peers: peers.length }, ensureShard !== undefined ? 'fetching the data set\'s description and test split from the swarm' : 'fetching the data set from the swarm')
  const r = await fetchDataset(components.node, peers, name, dataDir, ensureShard !== undefined ? { shards: [] } : {})
  logger.info({ dataset: name, ms: r.ms, bytes: r.bytes }, 'data set fetched')
  return loadDataset(name, { dataDir, ensureShard })
}
