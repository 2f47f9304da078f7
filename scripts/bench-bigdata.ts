/**
 * Big data across peers: 3 real peers train one job on an imported data set of
 * about 1 GB that no peer holds whole.
 *
 *   npm run bench:bigdata -- [--mb 1024] [--shards 24] [--seconds 30] [--keep] [--json] [-- <job flags for peer start>]
 *
 * 1. Generates a CSV of about `--mb` MB (scripts/generate-csv.ts, the one
 *    `npm run bench:import` uses) and imports it on the first peer's data dir
 *    with `peer dataset import --label label --text body --missing drop`
 *    (a child process: its time, and its peak RSS polled from /proc).
 * 2. Starts 3 peers (`bin/peer.js start`, the others `--join` with the first's
 *    token), the first with `--dataset <id>` and the job's default R = 2
 *    replicas, and waits until the placement has settled: every peer holds
 *    exactly the shards it keeps, none is being fetched, no shard is below R.
 * 3. Over a steady window, the swarm's samples/s (median of the first peer's
 *    `training.samplesPerSec`, which counts the swarm's samples) and each
 *    peer's step split.
 * 4. Per peer: the bytes of the data set in its data dir (training shards and
 *    test split, from the files on disk), the shards it holds of the total,
 *    what it fetched, and its peak RSS (VmHWM from /proc/<pid>/status); then
 *    whether any peer holds the whole set and whether every shard has R copies
 *    on disk.
 *
 * Everything lives in one temp dir, removed at the end, on an error and on
 * Ctrl-C (unless --keep). Nothing is asserted: the machine is shared.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { cpus, freemem, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { joinTokenOf } from '../node/security/index.ts'
import { generate } from './generate-csv.ts'
import { readStatus } from './peer-status.ts'
import type { ReplicationStatus } from '../node/shard-transfer/index.ts'

const { values: args, positionals } = parseArgs({
  options: {
    mb: { type: 'string', default: '1024' },
    shards: { type: 'string', default: '24' },
    peers: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
    'settle-timeout': { type: 'string', default: '900' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false }
  },
  allowPositionals: true
})
const mb = Number(args.mb)
const shardCount = Number(args.shards)
const n = Number(args.peers)
const seconds = Number(args.seconds)
const warmup = Number(args.warmup)
const settleTimeout = Number(args['settle-timeout'])
for (const [name, v, ok] of [['--mb', mb, mb > 0], ['--shards', shardCount, Number.isInteger(shardCount) && shardCount >= 2], ['--peers', n, Number.isInteger(n) && n >= 2], ['--seconds', seconds, seconds > 0], ['--warmup', warmup, warmup >= 0], ['--settle-timeout', settleTimeout, settleTimeout > 0]] as const) {
  if (!ok || !Number.isFinite(v)) {
    process.stderr.write(`bench-bigdata: ${name} ${String(v)} is not valid\n`)
    process.exit(2)
  }
}
const jobArgs = positionals
const root = join(import.meta.dirname, '..')
const bin = join(root, 'bin', 'peer.js')
const log = (line: string): void => { (args.json === true ? process.stderr : process.stdout).write(`${line}\n`) }
const GB = 1e9
const mbOf = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`

/** A data set's line of `peer status --json` datasets[]. */
type DatasetStatus = ReplicationStatus

interface Status {
  state: string
  pid: number
  addresses: string[]
  error: unknown
  members: Array<{ live: boolean }>
  ring: { members: string[], completed?: number }
  training: { step: number, samplesPerSec: number, loss: number | null, accuracy: number | null, timing: { computeMs: number, reduceMs: number, applyMs: number } } | null
  datasets?: DatasetStatus[]
}

interface ShardFile { index: number, file: string, bytes: number, rows: number }
interface Description { shards: ShardFile[], test: ShardFile, features: number }

const base = mkdtempSync(join(tmpdir(), 'peer-bench-bigdata-'))
const children: ChildProcess[] = []
let cleaned = false

/** Kills every child (SIGKILL), waits for their exits (5 s at most), removes the temp dir unless --keep. */
async function cleanup (): Promise<void> {
  if (cleaned) return
  cleaned = true
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await Promise.race([
    Promise.all(children.map(async c => { if (c.exitCode === null && c.signalCode === null) await new Promise(resolve => c.once('exit', resolve)) })),
    sleep(5000)
  ])
  if (args.keep !== true) rmSync(base, { recursive: true, force: true })
  else log(`kept ${base}`)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`\n${signal}: stopping the peers, removing ${base}`)
    void cleanup().finally(() => process.exit(130))
  })
}

/** Peak and current resident memory of a process, from /proc (bytes), or null once it is gone. */
function memoryOf (pid: number): { hwm: number, rss: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024
    return { hwm: kb('VmHWM'), rss: kb('VmRSS') }
  } catch {
    return null
  }
}

async function status (dataDir: string): Promise<Status | null> {
  return await readStatus<Status>(dataDir, 5000)
}

async function until<T> (what: string, ms: number, probe: () => Promise<T | null | undefined>, every = 500): Promise<T> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const v = await probe()
    if (v !== null && v !== undefined) return v
    await sleep(every)
  }
  throw new Error(`${what}: not within ${ms / 1000} s`)
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0

/** Spawns `bin/peer.js ...argv`, keeping the last 8 KiB of its stderr for an error message. */
function peer (argv: string[], name: string): { child: ChildProcess, stderr: () => string, exit: Promise<number> } {
  const child = spawn(process.execPath, [bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEER_LOG_LEVEL: process.env.PEER_LOG_LEVEL ?? 'warn' } })
  children.push(child)
  let err = ''
  child.stdout?.on('data', () => {})
  child.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-8192) })
  const exit = new Promise<number>(resolve => child.once('exit', (code, signal) => { resolve(code ?? (signal !== null ? 128 : 1)) }))
  void exit.then(code => { if (!cleaned && code !== 0 && name !== 'import') log(`[${name}] exited with ${code}: ${err.slice(-2000)}`) })
  return { child, stderr: () => err, exit }
}

/** The bytes of the data set's files in a data dir: training shards (by index) and the test split. */
function heldOnDisk (dataDir: string, datasetId: string, description: Description): { train: number, test: number, shards: number[] } {
  const dir = join(dataDir, 'datasets', datasetId)
  let names: string[]
  try { names = readdirSync(dir) } catch { names = [] }
  const present = new Set(names)
  const size = (f: string): number => { try { return statSync(join(dir, f)).size } catch { return 0 } }
  const shards = description.shards.filter(s => present.has(s.file)).map(s => s.index)
  return {
    train: description.shards.filter(s => present.has(s.file)).reduce((a, s) => a + size(s.file), 0),
    test: present.has(description.test.file) ? size(description.test.file) : 0,
    shards
  }
}

const loadBefore = loadavg()
log(`bench-bigdata: ${cpus().length} CPUs, ${(freemem() / 2 ** 30).toFixed(1)} GiB free, load ${loadBefore.map(l => l.toFixed(2)).join(' ')}; temp dir ${base}`)
let failed = false
try {
  // 1. the data set
  const csv = join(base, `data-${mb}mb.csv`)
  let t0 = performance.now()
  const rows = await generate(csv, mb)
  const csvBytes = statSync(csv).size
  log(`generated ${mbOf(csvBytes)} of CSV, ${rows} rows, in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const dirs = Array.from({ length: n }, (_, i) => join(base, `peer-${i + 1}`))
  t0 = performance.now()
  const imp = peer(['dataset', 'import', csv, '--label', 'label', '--text', 'body', '--missing', 'drop', '--shards', String(shardCount), '--json', '--data-dir', dirs[0]], 'import')
  let importOut = ''
  imp.child.stdout?.on('data', (b: Buffer) => { importOut += b.toString() })
  let importHwm = 0
  const poll = setInterval(() => { importHwm = Math.max(importHwm, memoryOf(imp.child.pid ?? -1)?.hwm ?? 0) }, 100)
  const importCode = await imp.exit
  clearInterval(poll)
  if (importCode !== 0) throw new Error(`peer dataset import exited with ${importCode}: ${imp.stderr()}`)
  const importSeconds = (performance.now() - t0) / 1000
  const report = JSON.parse(importOut.trim().split('\n').pop() as string) as { datasetId: string, rowsWritten: number, trainRows: number, testRows: number, features: number, bytes: number, shards: number }
  rmSync(csv) // the peers train from the shards; the CSV only takes disk
  const description = JSON.parse(readFileSync(join(dirs[0], 'datasets', report.datasetId, 'dataset.json'), 'utf8')) as Description
  const trainBytes = description.shards.reduce((a, s) => a + s.bytes, 0)
  const totalBytes = trainBytes + description.test.bytes
  log(`imported ${report.datasetId} in ${importSeconds.toFixed(1)} s (peak RSS >= ${mbOf(importHwm)}, polled): ${report.rowsWritten} rows (${report.trainRows} train in ${report.shards} shards, ${report.testRows} test), ${report.features} features, ${(totalBytes / GB).toFixed(2)} GB of Arrow (${(trainBytes / GB).toFixed(2)} GB training shards, ${mbOf(description.test.bytes)} test split)`)

  // 2. three peers on it
  t0 = performance.now()
  const common = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--min-peers', String(n)]
  const procs = [peer(['start', '--data-dir', dirs[0], ...common, '--dataset', report.datasetId, '--epochs', '1000', ...jobArgs], 'peer-1')]
  const address = await until('the first peer listening', 120_000, async () => (await status(dirs[0]))?.addresses[0])
  const token = await joinTokenOf(dirs[0], [address])
  const joinArgs = token !== null ? ['--join', token] : ['--open', '--join', address]
  for (let i = 1; i < n; i++) procs.push(peer(['start', '--data-dir', dirs[i], ...common, ...joinArgs], `peer-${i + 1}`))
  const exited = (): string | null => { const i = procs.findIndex(p => p.child.exitCode !== null || p.child.signalCode !== null); return i === -1 ? null : `peer-${i + 1} exited: ${procs[i].stderr().slice(-2000)}` }
  const ring = await until(`${n} peers training in one ring`, 180_000, async () => {
    const gone = exited()
    if (gone !== null) throw new Error(gone)
    const all = await Promise.all(dirs.map(status))
    return all.every(s => (s?.state === 'training' || s?.state === 'reducing') && s.ring.members.length === n) ? all : null
  })
  const ringSeconds = (performance.now() - t0) / 1000
  log(`${n} peers training in one ring after ${ringSeconds.toFixed(1)} s (step ${ring[0]?.training?.step ?? 0})`)
  let lastReport = 0
  const settled = await until('the placement to settle (every peer holds what it keeps, nothing fetching, no shard below R)', settleTimeout * 1000, async () => {
    const gone = exited()
    if (gone !== null) throw new Error(gone)
    const all = await Promise.all(dirs.map(status))
    const ds = all.map(s => s?.datasets?.find(d => d.dataset === report.datasetId))
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now()
      log(`  ${((performance.now() - t0) / 1000).toFixed(0)} s: shards held ${ds.map(d => d === undefined ? '?' : `${d.held}/${d.kept}`).join(', ')} (held/kept), below R ${ds.map(d => d?.belowReplicas.length ?? '?').join(', ')}, fetched ${ds.map(d => mbOf(d?.fetchedBytes ?? 0)).join(', ')}; swarm ${all[0]?.training?.samplesPerSec ?? '?'} samples/s`)
    }
    return ds.every(d => d !== undefined && d.held === d.kept && d.kept > 0 && d.fetching === null && d.belowReplicas.length === 0) &&
      all.every(s => s?.members.filter(m => m.live).length === n)
      ? all
      : null
  }, 1000)
  const settleSeconds = (performance.now() - t0) / 1000
  log(`placement settled ${settleSeconds.toFixed(1)} s after the first peer started`)

  // 3. steady training
  await sleep(warmup * 1000)
  const rates: number[] = []
  const first = await until('status', 10_000, async () => await status(dirs[0]))
  const w0 = performance.now()
  let last = first
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    await sleep(1000)
    const s = await status(dirs[0])
    if (s?.training == null) continue
    rates.push(s.training.samplesPerSec)
    last = s
  }
  const window = (performance.now() - w0) / 1000
  const finals = await Promise.all(dirs.map(status))
  const gone = exited()
  if (gone !== null) throw new Error(gone)

  // 4. per peer
  const peers = dirs.map((dir, i) => {
    const s = finals[i] ?? settled[i] as Status
    const d = s.datasets?.find(x => x.dataset === report.datasetId) as DatasetStatus
    const disk = heldOnDisk(dir, report.datasetId, description)
    const mem = memoryOf(procs[i].child.pid ?? -1)
    return {
      peer: `peer-${i + 1}`,
      heldShards: disk.shards.length,
      shards: description.shards.length,
      heldBytes: disk.train + disk.test,
      heldTrainBytes: disk.train,
      heldFraction: (disk.train + disk.test) / totalBytes,
      fetchedBytes: d?.fetchedBytes ?? 0,
      dropped: d?.dropped ?? 0,
      peakRss: mem?.hwm ?? 0,
      rss: mem?.rss ?? 0,
      timing: s.training?.timing ?? null,
      indices: disk.shards
    }
  })
  const copies = new Map<number, number>()
  for (const p of peers) for (const k of p.indices) copies.set(k, (copies.get(k) ?? 0) + 1)
  const replicas = settled[0]?.datasets?.[0]?.replicas ?? 2
  const minCopies = Math.min(...description.shards.map(s => copies.get(s.index) ?? 0))
  const wholeHolders = peers.filter(p => p.heldShards === p.shards)
  const samplesPerSec = Math.round(median(rates))
  const steps = (last.training?.step ?? 0) - (first.training?.step ?? 0)
  const loadAfter = loadavg()
  if (args.json === true) {
    process.stdout.write(JSON.stringify({
      meta: { cores: cpus().length, loadBefore, loadAfter, job: jobArgs, mb },
      dataset: { id: report.datasetId, csvBytes, rows: report.rowsWritten, trainRows: report.trainRows, testRows: report.testRows, features: report.features, shards: description.shards.length, bytes: totalBytes, trainBytes, testBytes: description.test.bytes, importSeconds, importPeakRss: importHwm },
      ringSeconds,
      settleSeconds,
      replicas,
      minCopies,
      noPeerHoldsAll: wholeHolders.length === 0,
      samplesPerSec,
      stepsPerSec: steps / window,
      peers: peers.map(({ indices, ...p }) => p)
    }, null, 2) + '\n')
  } else {
    log(`swarm: ${samplesPerSec} samples/s (median over ${window.toFixed(0)} s), ${(steps / window).toFixed(1)} steps/s; loss ${last.training?.loss?.toFixed(3) ?? '-'}`)
    for (const p of peers) {
      log(`  ${p.peer}: holds ${p.heldShards}/${p.shards} training shards + test split = ${(p.heldBytes / GB).toFixed(3)} GB (${(p.heldFraction * 100).toFixed(0)}% of ${(totalBytes / GB).toFixed(2)} GB), fetched ${mbOf(p.fetchedBytes)} of training shards, dropped ${p.dropped} shards; peak RSS ${mbOf(p.peakRss)} (now ${mbOf(p.rss)}); step: compute ${p.timing?.computeMs ?? '-'} ms, reduce ${p.timing?.reduceMs ?? '-'} ms, apply ${p.timing?.applyMs ?? '-'} ms`)
    }
    log(wholeHolders.length === 0 ? `no peer holds the whole data set (R = ${replicas}: about R/N = ${(replicas / n * 100).toFixed(0)}% of the training shards each)` : `${wholeHolders.map(p => p.peer).join(', ')} hold(s) the whole data set`)
    log(minCopies >= replicas ? `every training shard is on >= ${replicas} peers' disks (fewest copies: ${minCopies})` : `a training shard has only ${minCopies} copies on disk (R = ${replicas})`)
    log(`(${cpus().length} cores, peers not pinned; load ${loadBefore.map(l => l.toFixed(2)).join(' ')} → ${loadAfter.map(l => l.toFixed(2)).join(' ')})`)
  }
} catch (err) {
  failed = true
  process.stderr.write(`bench-bigdata: ${err instanceof Error ? err.message : String(err)}\n`)
} finally {
  await cleanup()
}
process.exit(failed ? 1 : 0)
