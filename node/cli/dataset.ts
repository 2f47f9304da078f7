/**
 * `peer dataset import FILE --label COL …` and `peer dataset ls`: bring a CSV,
 * JSON-lines or Parquet file into the data dir as a data set a job can name.
 *
 * `dataset` is one entry in main's command list; its subcommands are parsed
 * here by a nested parser, from the words main hands over (main gives each
 * command its flags; a preAction hook adds the raw words to them).
 */
import type { Command } from 'commander'
import { Command as Parser, CommanderError, InvalidArgumentError, Option } from 'commander'
import { resolveDataDir } from '../peer/datadir.ts'
import type { PeerStatus } from '../peer/status.ts'
import { existsSync } from 'node:fs'
import type { DatasetDescription, DatasetEntry } from '../data/imported/index.ts'
import type { ReplicationStatus } from '../shard-transfer/index.ts'
import { datasetLine } from './format.ts'
import { EXIT_OK, EXIT_USAGE } from './context.ts'
import type { CliContext } from './context.ts'
import { parsePositiveInt } from './options.ts'

interface DatasetFlags {
  /** The words after `dataset`, put there by the preAction hook. */
  words?: string[]
}

interface ImportFlags {
  label?: string
  lm: boolean
  context?: number
  text: string[]
  ignore: string[]
  shards?: number
  normalize: 'zscore' | 'minmax' | 'none'
  missing: 'drop' | 'fill'
  buckets?: number
  testFraction?: number
  memoryLimit?: string
  threads?: number
  engine?: 'duckdb' | 'js'
  json: boolean
  out?: string
  dataDir?: string
  progress: boolean
}

interface LsFlags {
  json: boolean
  out?: string
  dataDir?: string
}

function repeatable (value: string, previous: string[]): string[] {
  return [...previous, value]
}

function parseBuckets (value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < 256 || n > 65536 || (n & (n - 1)) !== 0) throw new InvalidArgumentError('expected a power of two from 256 to 65536')
  return n
}

function parseMemoryLimit (value: string): string {
  if (!/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$/i.test(value)) throw new InvalidArgumentError('expected a size such as 512MB or 4GB')
  return value.trim()
}

function parseTestFraction (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 0.9) throw new InvalidArgumentError('expected a number in [0, 0.9]')
  return n
}

const IMPORT_ERRORS = new Set([
  'DataInputError', 'MissingColumnError', 'EmptyInputError', 'RaggedRowError', 'EncodingError', 'MalformedInputError', 'UnusableInputError'
])

export const datasetCommand = {
  name: 'dataset',
  configure (cmd: Command): Command {
    return cmd
      .description('import and list data sets: `peer dataset import FILE --label COL`, `peer dataset ls` (see `peer dataset help`)')
      .usage('import FILE --label COL [options] | ls [options]')
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .hook('preAction', (self) => { self.setOptionValue('words', [...self.args]) })
  },
  async execute (ctx: CliContext, flags: DatasetFlags): Promise<number> {
    let code = EXIT_OK
    const program = new Parser('peer dataset')
      .exitOverride()
      .configureOutput({ writeOut: s => { ctx.stdout.write(s) }, writeErr: s => { ctx.stderr.write(s) } })
      .showHelpAfterError('(run `peer dataset help` for usage)')
    program.command('import')
      .description('read a CSV, JSON-lines or Parquet file, clean, type and shard it into a data set in the data dir')
      .argument('<file>', 'CSV (header row, quoted fields, UTF-8), JSON lines (.jsonl/.ndjson: one object per line) or Parquet (.parquet); with --lm, UTF-8 text')
      .addOption(new Option('--label <col>', 'the column to predict (its values become classes); required unless --lm'))
      .addOption(new Option('--lm', 'a language-model data set from a UTF-8 text file: windows of --context + 1 byte tokens, for --model gpt').default(false))
      .addOption(new Option('--context <n>', 'with --lm: tokens the model sees at once (default 64)').argParser(parsePositiveInt))
      .addOption(new Option('--text <col>', 'a free-text column, turned into hashed word n-grams (repeatable)').argParser(repeatable).default([]))
      .addOption(new Option('--ignore <col>', 'a column to leave out, such as an id (repeatable)').argParser(repeatable).default([]))
      .addOption(new Option('--shards <n>', 'training shards to cut the rows into (default 8)').argParser(parsePositiveInt))
      .addOption(new Option('--normalize <how>', 'numeric columns: z-score, min-max, or as they are').choices(['zscore', 'minmax', 'none']).default('zscore'))
      .addOption(new Option('--missing <how>', 'rows with a missing value: drop them, or fill (mean, most frequent category, empty text)').choices(['drop', 'fill']).default('drop'))
      .addOption(new Option('--buckets <n>', 'hash buckets per text column (power of two, default 4096)').argParser(parseBuckets))
      .addOption(new Option('--test-fraction <f>', 'share of rows held out for testing (default 0.15)').argParser(parseTestFraction))
      .addOption(new Option('--memory-limit <size>', 'DuckDB\'s memory limit; beyond it, it spills to a temp dir in the data dir (default 512MB)').argParser(parseMemoryLimit))
      .addOption(new Option('--threads <n>', 'DuckDB\'s threads (default: every CPU)').argParser(parsePositiveInt))
      .addOption(new Option('--engine <name>', 'duckdb, or js: the JavaScript reader (CSV and JSON lines only; the fallback where DuckDB cannot load)').choices(['duckdb', 'js']))
      .addOption(new Option('--json', 'print the report as one JSON object').default(false))
      .addOption(new Option('--out <dir>', 'write the data set under this directory instead of <data-dir>/datasets'))
      .addOption(new Option('--data-dir <dir>', 'the peer\'s data dir (default: $PEER_HOME or ~/.peer)'))
      .addOption(new Option('--no-progress', 'no progress bar'))
      .action(async (file: string, opts: ImportFlags) => { code = await runImport(ctx, file, opts) })
    program.command('ls')
      .description('list the data sets in the data dir')
      .addOption(new Option('--json', 'print one JSON array').default(false))
      .addOption(new Option('--out <dir>', 'list this directory instead of <data-dir>/datasets'))
      .addOption(new Option('--data-dir <dir>', 'the peer\'s data dir (default: $PEER_HOME or ~/.peer)'))
      .action(async (opts: LsFlags) => { code = await runLs(ctx, opts) })
    const words = flags.words ?? []
    if (words.length === 0) {
      program.outputHelp()
      return EXIT_USAGE
    }
    try {
      await program.parseAsync(words, { from: 'user' })
      return code
    } catch (err) {
      if (err instanceof CommanderError) {
        if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return EXIT_OK
        return EXIT_USAGE
      }
      throw err
    }
  }
}

async function runImport (ctx: CliContext, file: string, opts: ImportFlags): Promise<number> {
  const { importDataset, importLmText, datasetsRoot, MAX_LM_CONTEXT } = await import('../data/imported/index.ts')
  const usage = (message: string): number => {
    ctx.stderr.write(`peer dataset import: ${message}\n`)
    return EXIT_USAGE
  }
  if (opts.lm) {
    const tabular = (['label', 'buckets', 'memoryLimit', 'threads', 'engine'] as const).filter(k => opts[k] !== undefined)
    if (opts.text.length > 0 || opts.ignore.length > 0) tabular.push('label')
    if (tabular.length > 0) return usage('--lm reads plain text: --label, --text, --ignore, --buckets, --memory-limit, --threads and --engine are for tables')
    if (opts.context !== undefined && opts.context > MAX_LM_CONTEXT) return usage(`--context: at most ${MAX_LM_CONTEXT}`)
  } else {
    if (opts.label === undefined) return usage('required option \'--label <col>\' not specified (or --lm for a text file)')
    if (opts.context !== undefined) return usage('--context is for --lm')
  }
  const outDir = opts.out ?? datasetsRoot(resolveDataDir(opts.dataDir, ctx.env))
  const stderr = ctx.stderr as NodeJS.WriteStream
  const bar = opts.progress && !opts.json && !opts.lm && stderr.isTTY === true ? await progressBar(stderr) : null
  let report
  try {
    report = opts.lm ? await importLmText(file, { context: opts.context, shards: opts.shards, testFraction: opts.testFraction, outDir }) : await importDataset(file, {
      label: opts.label as string,
      text: opts.text,
      ignore: opts.ignore,
      shards: opts.shards,
      normalize: opts.normalize,
      missing: opts.missing,
      buckets: opts.buckets,
      testFraction: opts.testFraction,
      memoryLimit: opts.memoryLimit,
      threads: opts.threads,
      engine: opts.engine,
      outDir,
      onProgress: bar?.update
    })
  } catch (err) {
    bar?.stop()
    const e = err as NodeJS.ErrnoException
    if (IMPORT_ERRORS.has(e.name)) {
      ctx.stderr.write(`peer dataset import: ${e.message}\n`)
      return EXIT_USAGE
    }
    throw err
  }
  bar?.stop()
  if (opts.json) {
    const { dir, existing, bytes, trainRows, testRows, features, classes, ...rest } = report
    ctx.stdout.write(`${JSON.stringify({ ...rest, trainRows, testRows, features, classes, bytes, dir, existing })}\n`)
    return EXIT_OK
  }
  const out = (s: string): void => { ctx.stdout.write(`${s}\n`) }
  out(`${report.existing ? 'already imported' : 'imported'} ${file} as ${report.datasetId}`)
  out(`  ${report.dir}`)
  if (opts.lm) {
    out(`windows   ${report.features} byte tokens each (context ${report.features - 1}), ${report.trainRows} for training in ${report.shards} shard${report.shards === 1 ? '' : 's'}, ${report.testRows} held out`)
    out(`train on it: peer start --dataset ${report.datasetId} --model gpt${opts.out !== undefined ? ' (from a data dir whose datasets/ holds it)' : ''}`)
    return EXIT_OK
  }
  out(`rows      ${report.rowsRead} read, ${report.droppedMissing} dropped for missing values, ${report.droppedDuplicates} dropped as duplicates, ${report.rowsWritten} written`)
  out(`          ${report.trainRows} for training in ${report.shards} shard${report.shards === 1 ? '' : 's'}, ${report.testRows} held out for testing`)
  out(`label     ${report.classes.length} classes: ${report.classes.slice(0, 10).join(', ')}${report.classes.length > 10 ? ', …' : ''}`)
  out(`features  ${report.features}`)
  const e = report.engine
  out(`engine    ${e.name === 'duckdb' ? `DuckDB ${e.version ?? ''}, ${e.threads ?? '?'} threads, memory limit ${e.memoryLimit ?? '?'}${(e.spilledBytes ?? 0) > 0 ? `, spilled ${((e.spilledBytes ?? 0) / 1e6).toFixed(0)} MB` : ''}` : 'JavaScript (DuckDB not used)'}`)
  out('columns')
  const width = Math.min(24, Math.max(...report.columns.map(c => c.name.length)))
  for (const c of report.columns) {
    const extra = [
      c.categories !== undefined && c.type === 'categorical' ? `${c.categories} categories` : '',
      c.missing > 0 ? `${c.missing} missing` : '',
      c.note ?? ''
    ].filter(s => s !== '').join(', ')
    out(`  ${c.name.padEnd(width)}  ${c.type.padEnd(11)}  ${extra}`.trimEnd())
  }
  out(`train on it: peer start --dataset ${report.datasetId}${opts.out !== undefined ? ' (from a data dir whose datasets/ holds it)' : ''}`)
  return EXIT_OK
}

async function runLs (ctx: CliContext, opts: LsFlags): Promise<number> {
  const { listDatasets, datasetsRoot, readDescription, shardPath } = await import('../data/imported/index.ts')
  const root = opts.out ?? datasetsRoot(resolveDataDir(opts.dataDir, ctx.env))
  const heldHere = (e: DatasetEntry): number => {
    let d: DatasetDescription
    try { d = readDescription(e.dir, e.id) } catch { return 0 }
    return d.shards.filter(s => existsSync(shardPath(e.dir, s))).length
  }
  const swarm = opts.out === undefined ? await swarmReplicas(resolveDataDir(opts.dataDir, ctx.env)) : new Map<string, ReplicationStatus>()
  const entries = listDatasets(root).map(e => withReplicas(e, heldHere(e), swarm.get(e.id)))
  if (opts.json) {
    ctx.stdout.write(`${JSON.stringify(entries)}\n`)
    return EXIT_OK
  }
  if (entries.length === 0) {
    ctx.stdout.write(`no data sets in ${root} (peer dataset import FILE --label COL adds one)\n`)
    return EXIT_OK
  }
  for (const e of entries) {
    if (e.error !== undefined) {
      ctx.stdout.write(`${e.id}  unreadable: ${e.error}\n`)
      continue
    }
    const shards = e.shardsPresent === e.shards + 1 ? `${e.shards} shards` : `${e.shards} shards (${e.shardsPresent} of ${e.shards + 1} files here)`
    ctx.stdout.write(`${e.id}  ${e.rows} rows (${e.trainRows} train, ${e.testRows} test)  ${shards}  ${e.features} features  ${e.classes} classes of "${e.label}"  ${(e.bytes / 1024 ** 2).toFixed(1)} MiB\n`)
    const r = swarm.get(e.id)
    if (r !== undefined) ctx.stdout.write(`  in the swarm (the peer running here): ${datasetLine(r, false)}\n`)
  }
  return EXIT_OK
}

/** What the peer running on this data dir (if any) knows of its data set's shards across the swarm. */
async function swarmReplicas (dataDir: string): Promise<Map<string, ReplicationStatus>> {
  const { ApiClient } = await import('../api/client.ts')
  try {
    const status = await (await ApiClient.fromDataDir(dataDir)).status() as unknown as PeerStatus
    return new Map((status.datasets ?? []).map(d => [d.dataset, d]))
  } catch {
    // no peer running here (or it does not answer): the listing shows this data dir's files only
    return new Map()
  }
}

/**
 * A listed data set with the training shards held here and, when a peer runs on the data dir and trains it, R,
 * the live copies of each shard swarm-wide and the shards below R (null without a running peer).
 */
function withReplicas (e: DatasetEntry, held: number, r: ReplicationStatus | undefined): DatasetEntry & { held: number, replicas: number | null, copies: Record<string, number> | null, belowReplicas: string[] | null } {
  return { ...e, held, replicas: r?.replicas ?? null, copies: r?.copies ?? null, belowReplicas: r?.belowReplicas ?? null }
}

async function progressBar (stream: NodeJS.WriteStream): Promise<{ update: (p: { phase: string, bytes: number, totalBytes: number, rows: number }) => void, stop: () => void }> {
  const { SingleBar } = await import('cli-progress')
  const bar = new SingleBar({
    stream,
    format: '{phase} [{bar}] {percentage}% | {mb} of {totalMb} MB | {rows} rows',
    hideCursor: true,
    clearOnComplete: true
  })
  let started = false
  let phase = ''
  return {
    update: p => {
      const payload = { phase: p.phase.padEnd(5), mb: (p.bytes / 1e6).toFixed(0), totalMb: (p.totalBytes / 1e6).toFixed(0), rows: p.rows }
      if (!started || phase !== p.phase) {
        if (started) bar.stop()
        bar.start(Math.max(1, p.totalBytes), p.bytes, payload)
        started = true
        phase = p.phase
      } else {
        bar.update(p.bytes, payload)
      }
    },
    stop: () => { if (started) bar.stop() }
  }
}
