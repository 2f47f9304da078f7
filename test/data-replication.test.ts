/**
 * Shards live where they are trained, with real processes: a data set
 * imported on one peer is trained by three; each joiner holds about R/N of it
 * (not all); SIGKILL the importing peer: the other two end up holding every
 * shard (re-replicated from each other) and train on without a missing-shard
 * error; restart it: it fetches none of the files it still holds, and every
 * shard keeps at least R copies.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runPeer, waitFor } from './helpers/peer-process.ts'
import { LocalSwarm } from './helpers/swarm.ts'
import { datasetsRoot, readDescription } from '../node/data/imported/store.ts'
import { shardId } from '../node/data/shards.ts'
import type { StatusJson } from './helpers/swarm.ts'

const TIMING = ['--heartbeat-ms', '400', '--member-timeout', '2000', '--round-timeout', '4000', '--step-timeout', '2000', '--progress-every', '600']
const SHARDS = 6

interface DatasetStatus {
  dataset: string
  replicas: number
  shards: number
  held: number
  heldShards: string[]
  kept: number
  copies: Record<string, number>
  belowReplicas: string[]
  fetched: number
  fetches: Record<string, number>
  drops: Record<string, number>
  fetching: string | null
}

type Status = StatusJson & { datasets?: DatasetStatus[] }

const dataset = (s: Status): DatasetStatus | undefined => s.datasets?.[0]

/** The peers' statuses (from their control APIs, in process), or undefined while one does not answer. */
async function statuses (swarm: LocalSwarm, names: string[]): Promise<Status[] | undefined> {
  return await swarm.statuses(names) as Status[] | undefined
}

/** The training shards whose files are in a data set's directory. */
function filesHeld (dir: string): Set<string> {
  const files = new Set(readdirSync(dir))
  return new Set(readDescription(dir).shards.filter(sh => files.has(sh.file)).map(sh => shardId(sh.index)))
}

/** A shard is fetched again only after this peer dropped it: never one it still held. */
function fetchedOnlyWhatItLacked (s: Status): boolean {
  const d = dataset(s)
  return d !== undefined && Object.entries(d.fetches).every(([id, n]) => n <= 1 + (d.drops[id] ?? 0))
}

/** Every listed peer holds exactly its share (what it keeps: surplus dropped), no shard is below R, and each has trained `rounds` rounds. */
function settled (all: Status[], live: number, rounds = 1): boolean {
  return all.every(s => {
    const d = dataset(s)
    return d !== undefined && s.members.filter(m => m.live).length === live && d.belowReplicas.length === 0 &&
      d.held === d.kept && d.kept > 0 && d.fetching === null && (s.ring?.completed ?? 0) >= rounds && s.error === null
  })
}

test('a data set imported on one peer, trained by 3 with R = 2: about R/N of it per joiner; the importer killed and restarted loses and refetches nothing', async (t) => {
  const started = Date.now()
  const phase = (what: string): void => { t.diagnostic(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`) }
  const swarm = await LocalSwarm.create()
  try {
    const rows = ['x1,x2,colour,label']
    for (let i = 0; i < 1800; i++) {
      const x1 = ((i * 7919) % 1000) / 100
      const x2 = ((i * 104729) % 997) / 100
      rows.push(`${x1},${x2},${['red', 'green', 'blue'][i % 3]},${x1 + x2 > 10 ? 'high' : 'low'}`)
    }
    const csv = join(swarm.root, 'points.csv')
    writeFileSync(csv, `${rows.join('\n')}\n`)
    const imported = await runPeer(['dataset', 'import', csv, '--label', 'label', '--shards', String(SHARDS), '--json', '--data-dir', swarm.dataDir('a')])
    assert.equal(imported.code, 0, imported.stderr)
    const { datasetId } = JSON.parse(imported.stdout) as { datasetId: string }

    await swarm.start('a', ['--dataset', datasetId, '--hidden', '8', '--batch-size', '32', '--epochs', '10000', '--min-peers', '3', ...TIMING])
    await Promise.all(['b', 'c'].map(async n => await swarm.start(n, ['--min-peers', '3', ...TIMING], 'a')))
    const names = ['a', 'b', 'c']
    const first = await waitFor('3 peers training, every shard on 2 of them', async () => {
      const all = await statuses(swarm, names)
      return all !== undefined && settled(all, 3, 3) ? all : undefined
    }, 60_000, 300)
    for (const s of first.slice(1)) {
      const d = dataset(s) as DatasetStatus
      assert.equal(d.replicas, 2)
      assert.ok(d.held < SHARDS, `a joiner holds ${d.held} of ${SHARDS} shards: not all`)
      assert.ok(d.held >= 2, `a joiner holds ${d.held} of ${SHARDS} shards: about R/N = 4`)
      assert.ok(fetchedOnlyWhatItLacked(s), `fetched ${JSON.stringify(d.fetches)}, dropped ${JSON.stringify(d.drops)}`)
    }
    assert.equal(dataset(first[0])?.fetched, 0, 'the importer fetched nothing')
    phase(`3 peers settled (shards held: ${first.map(s => dataset(s)?.held).join(', ')} of ${SHARDS})`)

    // the importer goes: b and c copy from each other what only it and one of them held
    swarm.proc('a').child.kill('SIGKILL')
    await swarm.proc('a').exited(10_000)
    // what it still holds is what is on its disk at the kill (it may have dropped a surplus shard since it settled)
    const heldByImporter = filesHeld(join(datasetsRoot(swarm.dataDir('a')), datasetId))
    assert.ok(heldByImporter.size > 0, 'the importer holds shards at the kill')
    const roundsBefore = Math.max(...first.slice(1).map(s => s.ring?.completed ?? 0))
    const two = await waitFor('b and c to hold every shard and train on', async () => {
      const all = await statuses(swarm, ['b', 'c'])
      return all !== undefined && settled(all, 2, roundsBefore + 3) && all.every(s => dataset(s)?.held === SHARDS) ? all : undefined
    }, 60_000, 300)
    for (const s of two) {
      assert.notEqual(s.state, 'failed')
      assert.ok(fetchedOnlyWhatItLacked(s), `nothing fetched that it held: ${JSON.stringify(dataset(s))}`)
    }
    phase('b and c hold every shard')
    // the swarm's data position went on without a: whole epochs end (the rows of a's shards trained by b and c),
    // and no row was taken twice
    const killEpoch = Math.max(...first.map(s => s.training?.data.epoch ?? 0))
    const epochs = await waitFor('b and c to train two more epochs of the data set', async () => {
      const all = await statuses(swarm, ['b', 'c'])
      return all !== undefined && all.every(s => (s.training?.data.epoch ?? 0) >= killEpoch + 2) ? all : undefined
    }, 60_000, 300)
    for (const s of epochs) {
      assert.equal(s.training?.data.overTaken, 0, 'no row taken twice')
      assert.ok((s.training?.data.reading ?? 0) > 0, 'each reads shards of its own')
    }
    phase(`data epoch ${killEpoch} at the kill, ${epochs.map(s => s.training?.data.epoch).join(', ')} now`)
    for (const n of ['b', 'c']) assert.doesNotMatch(swarm.proc(n).stderr, /IncompleteDatasetError|missing shard|not in .* yet/)

    // it comes back: it still holds every file, so it fetches none; nothing is lost
    await swarm.start('a', TIMING)
    const back = await waitFor('a back and training, every shard on >= 2 peers', async () => {
      const all = await statuses(swarm, names)
      return all !== undefined && settled(all, 3, 1) && (all[0].training?.step ?? 0) > 0 ? all : undefined
    }, 60_000, 300)
    phase(`a back, settled (shards held: ${back.map(s => dataset(s)?.held).join(', ')}; a fetched ${dataset(back[0])?.fetched})`)
    // it fetches only the shards it had dropped before it was killed (it keeps some of them now), none it held
    const refetched = Object.keys(dataset(back[0])?.fetches ?? {}).filter(id => heldByImporter.has(id))
    assert.deepEqual(refetched, [], 'the restarted importer fetched nothing it still holds')
    for (const s of back) assert.ok(fetchedOnlyWhatItLacked(s), `nothing fetched that it held: ${JSON.stringify(dataset(s))}`)
    const union = new Set(back.flatMap(s => dataset(s)?.heldShards ?? []))
    assert.equal(union.size, SHARDS, 'every shard is still held')
    for (const [shard, copies] of Object.entries(dataset(back[1])?.copies ?? {})) assert.ok(copies >= 2, `${shard}: ${copies} copies`)
    // peer dataset ls shows it too, with the swarm's view while the peer runs
    const ls = await runPeer(['dataset', 'ls', '--json', '--data-dir', swarm.dataDir('b')])
    const listed = JSON.parse(ls.stdout) as Array<{ id: string, held: number, replicas: number | null, belowReplicas: string[] | null }>
    assert.equal(listed[0].id, datasetId)
    assert.equal(listed[0].replicas, 2)
    assert.deepEqual(listed[0].belowReplicas, [])
    assert.ok(listed[0].held > 0)
  } finally {
    await swarm.stopAll()
  }
})
