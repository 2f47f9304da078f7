/**
 * A peer's memory does not grow with its data set: the same short job on an
 * imported data set and on one 10x larger (whose dense training matrix, 340
 * MB, is what the trainer held before batches were streamed from the shard
 * files) gives real `peer start` processes peak RSS (VmHWM) within 100 MB of
 * each other. Four categorical columns of 100 values each one-hot to 400
 * features, so a 10 MB CSV makes a large matrix and the import stays quick.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runPeer, spawnPeer, tempDir, waitFor } from './helpers/peer-process.ts'
import type { PeerChild } from './helpers/peer-process.ts'
import { LOCAL } from './helpers/swarm.ts'
import { ApiClient } from '../node/api/client.ts'

const SMALL_ROWS = 25_000
const COLUMNS = 4
const CATEGORIES = 100
/** Steps each peer trains before its peak RSS is read (with batch 256, 1.5 windows of rows; the smaller set's epoch is 83 steps). */
const STEPS = 60
const MB = 1024 * 1024

function writeCsv (path: string, rows: number): void {
  let seed = 1
  const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 }
  const lines = [['a', 'b', ...Array.from({ length: COLUMNS }, (_, k) => `c${k}`), 'label'].join(',')]
  for (let i = 0; i < rows; i++) {
    const a = rand()
    const b = rand()
    const cats = Array.from({ length: COLUMNS }, () => `k${Math.floor(rand() * CATEGORIES)}`)
    lines.push(`${a.toFixed(4)},${b.toFixed(4)},${cats.join(',')},${a + b > 1 ? 'hi' : 'lo'}`)
  }
  writeFileSync(path, `${lines.join('\n')}\n`)
}

/** Peak resident set of a running process, from /proc (VmHWM, in bytes). */
function peakRss (pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmHWM in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

test('peak RSS of a peer training an imported data set 10x larger grows by less than 100 MB', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, async () => {
  const dir = await tempDir('peer-rss-')
  const peers: PeerChild[] = []
  try {
    const runs = await Promise.all([{ name: 'small', rows: SMALL_ROWS }, { name: 'large', rows: 10 * SMALL_ROWS }].map(async ({ name, rows }) => {
      const csv = join(dir.path, `${name}.csv`)
      writeCsv(csv, rows)
      const dataDir = join(dir.path, name)
      const imported = await runPeer(['dataset', 'import', csv, '--label', 'label', '--json', '--data-dir', dataDir], { timeoutMs: 60_000 })
      assert.equal(imported.code, 0, imported.stderr)
      const report = JSON.parse(imported.stdout) as { datasetId: string, features: number, trainRows: number }
      return { name, dataDir, ...report }
    }))
    const large = runs[1]
    assert.ok(large.trainRows * large.features * 4 > 300 * MB, `the larger set's dense training matrix is ${Math.round(large.trainRows * large.features * 4 / MB)} MB`)
    const peaks = await Promise.all(runs.map(async run => {
      const peer = spawnPeer(['start', '--data-dir', run.dataDir, ...LOCAL, '--dataset', run.datasetId, '--hidden', '16', '--batch-size', '256', '--epochs', '10', '--backend', 'wasm', '--checkpoint-every', '1000000', '--progress-every', '600'])
      peers.push(peer)
      // status straight from the control API, often: both peers are measured after about the same steps
      let client: ApiClient | undefined
      await waitFor(`the ${run.name} peer to train ${STEPS} steps`, async () => {
        if (peer.child.exitCode !== null) throw new Error(`the ${run.name} peer exited: ${peer.stderr.slice(-2000)}`)
        client ??= await ApiClient.fromDataDir(run.dataDir)
        const s = await client.status() as { training?: { step: number } | null }
        return (s.training?.step ?? 0) >= STEPS ? true : undefined
      }, 60_000, 100)
      return peakRss(peer.child.pid as number)
    }))
    const [small, big] = peaks
    const detail = `peak RSS ${Math.round(small / MB)} MB on ${runs[0].trainRows} rows, ${Math.round(big / MB)} MB on ${large.trainRows} rows × ${large.features} features`
    console.log(detail)
    assert.ok(big - small < 100 * MB, detail)
  } finally {
    for (const p of peers) p.child.kill('SIGKILL')
    await Promise.all(peers.map(async p => await p.exited(10_000)))
    await dir.remove()
  }
})
