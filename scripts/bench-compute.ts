/**
 * Where the gradients are computed, `peer start --compute main` against `--compute worker`: one peer alone per
 * run, pinned with `taskset -c 0` to one core (a one-core machine, as in bench:scaling), for each model asked
 * for. While it trains, its control API is asked for `/status` every 50 ms; the time each answer takes is how
 * long the peer's event loop (the one that also runs the network, the heartbeats and the rounds) was held up.
 * Prints, per model and mode, the samples/s (from the step count over the window) and that latency's p50,
 * p99 and max. The modes alternate, `--runs` times each, so that both see the machine's drift.
 *
 *   npm run bench:compute -- [--models mlp,cnn] [--seconds 10] [--runs 2] [--no-pin] [--json]
 *
 * Nothing is asserted: the machine is shared and noisy; compare within one run.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { readStatus } from './peer-status.ts'

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'mlp,cnn' },
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '2' },
    'no-pin': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false }
  }
})
const models = (args.models ?? '').split(',').filter(m => m !== '')
const seconds = Number(args.seconds)
const runs = Number(args.runs)
if (models.some(m => !['mlp', 'cnn', 'gpt'].includes(m)) || !(seconds > 0) || !(Number.isInteger(runs) && runs >= 1)) {
  process.stderr.write('bench-compute: --models takes mlp, cnn, gpt; --seconds a positive number; --runs a positive integer\n')
  process.exit(2)
}
const pin = args['no-pin'] !== true
const bin = join(import.meta.dirname, '..', 'bin', 'peer.js')

/** The batch each step trains (the job's, given on the command line). */
const BATCH = 64

interface Status { state: string, training: { step: number } | null }
interface Row { model: string, compute: 'main' | 'worker', samplesPerSec: number, p50: number, p99: number, max: number, polls: number }

function quantile (xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

async function until<T> (what: string, ms: number, probe: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== null && v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`bench-compute: ${what} not within ${ms} ms`)
    await sleep(200)
  }
}

async function run (model: string, compute: 'main' | 'worker'): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'peer-bench-compute-'))
  const argv = [bin, 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--epochs', '1000', '--backend', 'wasm', '--compute', compute, '--model', model, '--batch-size', String(BATCH)]
  const child: ChildProcess = spawn(pin ? 'taskset' : process.execPath, pin ? ['-c', '0', process.execPath, ...argv] : argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PEER_LOG_LEVEL: 'warn' } })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  try {
    await until(`the ${model} peer (--compute ${compute}) training`, 120_000, async () => {
      if (child.exitCode !== null) throw new Error(`the peer exited (${child.exitCode}): ${stderr}`)
      const s = await readStatus<Status>(dir)
      return s !== null && s.state === 'training' && (s.training?.step ?? 0) > 2 ? s : null
    })
    const api = JSON.parse(readFileSync(join(dir, 'api.json'), 'utf8')) as { url: string, token: string }
    const first = await readStatus<Status>(dir)
    const t0 = performance.now()
    const latencies: number[] = []
    while (performance.now() - t0 < seconds * 1000) {
      const t = performance.now()
      const res = await fetch(`${api.url}/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(30_000) })
      await res.json()
      latencies.push(performance.now() - t)
      await sleep(50)
    }
    const last = await readStatus<Status>(dir)
    const dt = (performance.now() - t0) / 1000
    const samples = ((last?.training?.step ?? 0) - (first?.training?.step ?? 0)) * BATCH
    return { model, compute, samplesPerSec: samples / dt, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: Math.max(...latencies), polls: latencies.length }
  } finally {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

const rows: Row[] = []
const before = loadavg()[0]
for (const model of models) {
  for (let r = 0; r < runs; r++) {
    for (const compute of ['main', 'worker'] as const) {
      const row = await run(model, compute)
      rows.push(row)
      if (args.json !== true) console.log(`${model.padEnd(4)} --compute ${compute.padEnd(6)}: ${row.samplesPerSec.toFixed(0).padStart(6)} samples/s; /status answered in p50 ${row.p50.toFixed(1)} ms, p99 ${row.p99.toFixed(1)} ms, max ${row.max.toFixed(1)} ms (${row.polls} asks)`)
    }
  }
}
const after = loadavg()[0]
if (args.json === true) console.log(JSON.stringify({ pinned: pin, load: [before, after], rows }))
else console.log(`(${pin ? 'pinned to core 0' : 'not pinned'}; load ${before.toFixed(1)} → ${after.toFixed(1)})`)
