/**
 * How fast `peer dataset import` runs and how much memory it needs, and how
 * fast shards move between two peers.
 *
 *   npx node scripts/bench-import.ts [--sizes 100,1000 | --mb N] [--shards 8] [--threads N] [--memory-limit 512MB] [--engine duckdb|js] [--keep]
 *
 * 1. Generates CSV files of about the given sizes (mixed numeric, categorical
 *    and free-text columns, quoted fields with commas, about 1% of values
 *    missing and 1% of rows duplicated) in a temp dir.
 * 2. Imports each in a child process (`--missing drop --text body`), so that
 *    the child's peak resident memory (getrusage's maxrss) is the import's own;
 *    prints rows/s, MB/s and peak RSS. Two sizes show whether memory grows
 *    with the file: it must not (DuckDB works under its memory limit and
 *    spills beyond it; the JavaScript writer streams; the limit is 1 GB).
 * 3. The reference, in another child: the same cleaning done directly in
 *    DuckDB, as a user of DuckDB would write it (read_csv with its type
 *    detection, drop rows with a missing value, drop duplicate rows, z-score
 *    the numeric columns, write Parquet), with the same threads; then the
 *    ratio of our time to DuckDB's. The counts must agree.
 * 4. Starts two in-process libp2p nodes (TCP, noise, yamux on loopback), one
 *    holding the largest data set, and fetches all of its shards from the
 *    other: MB/s of hash-checked shard transfer.
 *
 * A benchmark that prints numbers, not a test (the machines are shared).
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { availableParallelism, tmpdir, cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generate } from './generate-csv.ts'

const RSS_LIMIT_MB = 1024

const { values: args } = parseArgs({
  options: {
    mb: { type: 'string' },
    sizes: { type: 'string' },
    shards: { type: 'string', default: '8' },
    keep: { type: 'boolean', default: false },
    threads: { type: 'string' },
    'memory-limit': { type: 'string' },
    engine: { type: 'string', default: 'duckdb' },
    'child-import': { type: 'string' },
    'child-duckdb': { type: 'string' },
    out: { type: 'string' }
  }
})

/** CPU seconds of this process so far, every thread (DuckDB's workers included). */
function cpuSeconds (): number {
  const u = process.resourceUsage()
  return (u.userCPUTime + u.systemCPUTime) / 1e6
}

const threads = args.threads !== undefined ? Number(args.threads) : availableParallelism()

if (args['child-import'] !== undefined) {
  // the child: import one file, print one JSON line with the report, the time and the peak RSS
  const { importDataset } = await import('../node/data/imported/index.ts')
  const started = performance.now()
  const report = await importDataset(args['child-import'], {
    label: 'label', text: ['body'], missing: 'drop', shards: Number(args.shards), outDir: args.out as string,
    engine: args.engine as 'duckdb' | 'js', threads, memoryLimit: args['memory-limit']
  })
  const seconds = (performance.now() - started) / 1000
  process.stdout.write(`${JSON.stringify({ report, seconds, cpuSeconds: cpuSeconds(), maxRssKb: process.resourceUsage().maxRSS })}\n`)
  process.exit(0)
}

if (args['child-duckdb'] !== undefined) {
  // the reference: the same cleaning, written directly in DuckDB's SQL
  const { DuckDBInstance } = await import('@duckdb/node-api')
  const started = performance.now()
  const instance = await DuckDBInstance.create(':memory:', { threads: String(threads), ...(args['memory-limit'] !== undefined ? { memory_limit: args['memory-limit'] } : {}) })
  const db = await instance.connect()
  const quote = (s: string): string => `'${s.replaceAll("'", "''")}'`
  await db.run(`CREATE TABLE raw AS SELECT * FROM read_csv(${quote(args['child-duckdb'])})`)
  await db.run('CREATE TABLE clean AS SELECT DISTINCT * FROM raw WHERE COLUMNS(*) IS NOT NULL')
  const types = (await db.runAndReadAll('DESCRIBE clean')).getRowObjectsJS().map(r => ({ name: String(r.column_name), type: String(r.column_type) }))
  const numeric = types.filter(t => /^(DOUBLE|FLOAT|BIGINT|INTEGER|SMALLINT|TINYINT|DECIMAL)/.test(t.type)).map(t => t.name)
  const id = (s: string): string => `"${s.replaceAll('"', '""')}"`
  const moments = numeric.map((c, i) => `avg(${id(c)}) AS m${i}, stddev_pop(${id(c)}) AS s${i}`).join(', ')
  const select = types.map(t => { const i = numeric.indexOf(t.name); return i === -1 ? id(t.name) : `(${id(t.name)} - m${i}) / s${i} AS ${id(t.name)}` }).join(', ')
  await db.run(`COPY (SELECT ${select} FROM clean, (SELECT ${moments} FROM clean)) TO ${quote(join(args.out as string, 'clean.parquet'))} (FORMAT parquet)`)
  const counts = (await db.runAndReadAll('SELECT (SELECT count(*) FROM raw)::DOUBLE AS read, (SELECT count(*) FROM clean)::DOUBLE AS kept')).getRowObjectsJS()[0]
  const seconds = (performance.now() - started) / 1000
  db.closeSync()
  instance.closeSync()
  process.stdout.write(`${JSON.stringify({ rowsRead: counts.read, rowsKept: counts.kept, numeric, seconds, cpuSeconds: cpuSeconds(), maxRssKb: process.resourceUsage().maxRSS })}\n`)
  process.exit(0)
}

const sizes = (args.sizes ?? args.mb ?? '100,1000').split(',').map(Number)
if (sizes.some(mb => !(mb > 0))) throw new RangeError('--sizes: sizes in MB, comma-separated, each > 0')
const dir = mkdtempSync(join(tmpdir(), 'peer-bench-import-'))
console.log(`bench-import: ${cpus().length} CPUs, load ${loadavg()[0].toFixed(1)}; temp dir ${dir}`)
let largest: { id: string, dataDir: string } | null = null
try {
  for (const mb of sizes) {
    const file = join(dir, `data-${mb}mb.csv`)
    const t0 = performance.now()
    const rows = await generate(file, mb)
    const size = statSync(file).size
    console.log(`generated ${(size / 1e6).toFixed(1)} MB, ${rows} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    const dataDir = join(dir, `peer-${mb}`)
    const passOn = ['--shards', args.shards, '--threads', String(threads), '--engine', args.engine as string, ...(args['memory-limit'] !== undefined ? ['--memory-limit', args['memory-limit']] : [])]
    const child = spawnSync(process.execPath, [import.meta.filename, '--child-import', file, '--out', join(dataDir, 'datasets'), ...passOn], { encoding: 'utf8', maxBuffer: 1 << 24 })
    if (child.status !== 0) throw new Error(`import failed: ${child.stderr}`)
    const { report, seconds, cpuSeconds: cpu, maxRssKb } = JSON.parse(child.stdout.trim().split('\n').pop() as string) as { report: { rowsRead: number, rowsWritten: number, droppedMissing: number, droppedDuplicates: number, shards: number, datasetId: string, bytes: number, engine: { name: string, memoryLimit?: string, threads?: number, spilledBytes?: number, phases?: Array<{ name: string, seconds: number, cpuSeconds: number, peakRssBytes: number }> } }, seconds: number, cpuSeconds: number, maxRssKb: number }
    const rssMb = maxRssKb / 1024
    const e = report.engine
    console.log(`import ${(size / 1e6).toFixed(0)} MB (${e.name}${e.name === 'duckdb' ? `, ${e.threads} threads, memory limit ${e.memoryLimit}, spilled ${((e.spilledBytes ?? 0) / 1e6).toFixed(0)} MB` : ''}): ${report.rowsRead} rows read, ${report.droppedMissing} missing dropped, ${report.droppedDuplicates} duplicates dropped, ${report.rowsWritten} written to ${report.shards} shards (${(report.bytes / 1e6).toFixed(1)} MB of Arrow)`)
    console.log(`  ours:   ${seconds.toFixed(1)} s: ${Math.round(report.rowsRead / seconds)} rows/s, ${(size / 1e6 / seconds).toFixed(1)} MB/s, ${cpu.toFixed(1)} CPU s; peak RSS ${rssMb.toFixed(0)} MB ${rssMb < RSS_LIMIT_MB ? `(under ${RSS_LIMIT_MB} MB)` : `(OVER the ${RSS_LIMIT_MB} MB limit)`}`)
    if (e.phases !== undefined) console.log(`  ours, by phase: ${e.phases.map(p => `${p.name} ${p.seconds.toFixed(1)} s, ${p.cpuSeconds.toFixed(1)} CPU s (peak RSS ${(p.peakRssBytes / 2 ** 20).toFixed(0)} MB)`).join(', ')}`)
    largest = { id: report.datasetId, dataDir }

    const refDir = join(dir, `duckdb-${mb}`)
    mkdirSync(refDir)
    const ref = spawnSync(process.execPath, [import.meta.filename, '--child-duckdb', file, '--out', refDir, '--threads', String(threads), ...(args['memory-limit'] !== undefined ? ['--memory-limit', args['memory-limit']] : [])], { encoding: 'utf8', maxBuffer: 1 << 24 })
    if (ref.status !== 0) throw new Error(`DuckDB reference failed: ${ref.stderr}`)
    const r = JSON.parse(ref.stdout.trim().split('\n').pop() as string) as { rowsRead: number, rowsKept: number, numeric: string[], seconds: number, cpuSeconds: number, maxRssKb: number }
    const same = r.rowsRead === report.rowsRead && r.rowsKept === report.rowsWritten
    console.log(`  DuckDB: ${r.seconds.toFixed(1)} s: ${Math.round(r.rowsRead / r.seconds)} rows/s, ${(size / 1e6 / r.seconds).toFixed(1)} MB/s, ${r.cpuSeconds.toFixed(1)} CPU s; peak RSS ${(r.maxRssKb / 1024).toFixed(0)} MB (read_csv, drop missing, DISTINCT, z-score ${r.numeric.join(', ')}, write Parquet: ${r.rowsRead} rows read, ${r.rowsKept} kept${same ? ', the same counts' : ', DIFFERENT counts'})`)
    console.log(`  ratio: ours / DuckDB = ${(seconds / r.seconds).toFixed(2)}x the time (goal <= 2x), ${(cpu / r.cpuSeconds).toFixed(2)}x the CPU time, ${(maxRssKb / r.maxRssKb).toFixed(2)}x the peak RSS`)
  }

  if (largest !== null) {
    const [{ createLibp2p }, { tcp }, { noise }, { yamux }, shards] = await Promise.all([
      import('libp2p'), import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'), import('../node/shard-transfer/index.ts')
    ])
    const make = async (): Promise<Awaited<ReturnType<typeof createLibp2p>>> => await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    const holder = await make()
    const asker = await make()
    await asker.peerStore.merge(holder.peerId, { multiaddrs: holder.getMultiaddrs() })
    const service = new shards.ShardService({ node: holder, store: shards.createDataDirShardStore(largest.dataDir) })
    await service.start()
    const started = performance.now()
    const r = await shards.fetchDataset(asker, [holder.peerId], largest.id, join(dir, 'asker'))
    const seconds = (performance.now() - started) / 1000
    console.log(`shard fetch: ${r.fetched.length} shards, ${(r.bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s: ${(r.bytes / 1e6 / seconds).toFixed(0)} MB/s (one stream at a time, sha256 checked, written to disk)`)
    await service.stop()
    await asker.stop()
    await holder.stop()
  }
} finally {
  if (!args.keep) rmSync(dir, { recursive: true, force: true })
}
