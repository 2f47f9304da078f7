/**
 * `npm run bench:faults`: how fast the swarm recovers and grows.
 *
 * 1. Time from a SIGKILL of a member during an all-reduce to the next round
 *    the survivors complete (default timeouts, 3 peers, the default job).
 * 2. Time for a joiner to take part in a round (from its start, and the state
 *    fetch alone), against the model size, with 1 donor and with 3 donors.
 *
 * Real `peer start` processes on 127.0.0.1; status is read through the
 * control API directly (faster than spawning `peer status`). Prints numbers;
 * asserts nothing. Usage: node scripts/bench-faults.ts [--kills 3] [--models 256,128:1024,1024:2048,2048]
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiClient } from '../node/api/client.ts'
import { LocalSwarm } from '../test/helpers/swarm.ts'
import type { StatusJson } from '../test/helpers/swarm.ts'

const args = process.argv.slice(2)
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : fallback
}
const KILLS = Number(opt('--kills', '3'))
const MODELS = opt('--models', '256,128:1024,1024:2048,2048').split(':')

async function status (swarm: LocalSwarm, name: string): Promise<StatusJson | undefined> {
  try {
    return await (await ApiClient.fromDataDir(swarm.dataDir(name))).status(AbortSignal.timeout(5000)) as unknown as StatusJson
  } catch {
    return undefined
  }
}

async function until<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const v = await probe()
    if (v !== undefined) return v
    await sleep(everyMs)
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function startSwarm (n: number, job: string[]): Promise<LocalSwarm> {
  const swarm = await LocalSwarm.create()
  const common = ['--min-peers', String(n), '--progress-every', '3600']
  await swarm.start('p1', [...common, ...job])
  for (let i = 2; i <= n; i++) await swarm.start(`p${i}`, common, 'p1')
  await until('rounds to flow', async () => {
    const all = await Promise.all(swarm.peers.map(async p => await status(swarm, p.name)))
    return all.every(s => (s?.ring?.completed ?? 0) >= 5) ? true : undefined
  })
  return swarm
}

async function benchKills (): Promise<void> {
  process.stdout.write(`\n1. SIGKILL during an all-reduce → next completed round (3 peers, default job and timeouts)\n`)
  const swarm = await startSwarm(3, ['--epochs', '1000'])
  try {
    const times: number[] = []
    for (let k = 0; k < KILLS; k++) {
      await until('p3 in an all-reduce', async () => (await status(swarm, 'p3'))?.ring?.state === 'reducing' ? true : undefined, 60_000, 5)
      const before = await Promise.all(['p1', 'p2'].map(async n => (await status(swarm, n))?.ring?.completed ?? 0))
      const t0 = performance.now()
      swarm.proc('p3').child.kill('SIGKILL')
      await until('the survivors to complete a round', async () => {
        const now = await Promise.all(['p1', 'p2'].map(async n => (await status(swarm, n))?.ring?.completed ?? 0))
        // the round under way when the kill landed may still complete (it was past p3); wait for one more than that
        return now.every((c, i) => c >= before[i] + 2) ? true : undefined
      })
      const ms = performance.now() - t0
      times.push(ms)
      process.stdout.write(`  kill ${k + 1}: ${(ms / 1000).toFixed(2)} s\n`)
      await swarm.proc('p3').exited()
      await swarm.start('p3', ['--min-peers', '3', '--progress-every', '3600'], 'p1')
      await until('p3 to take part again', async () => ((await status(swarm, 'p3'))?.ring?.completed ?? 0) >= 3 ? true : undefined)
    }
    times.sort((a, b) => a - b)
    process.stdout.write(`  median ${(times[Math.floor(times.length / 2)] / 1000).toFixed(2)} s, max ${(times[times.length - 1] / 1000).toFixed(2)} s (default --member-timeout 5 s, --round-timeout 4 s, ring step timeout 5 s)\n`)
  } finally {
    await swarm.stopAll()
  }
}

async function benchJoin (hidden: string, donors: number): Promise<{ takePartS: number, fetchMs: number, bytes: number, donorsUsed: number }> {
  const swarm = await startSwarm(donors, ['--epochs', '1000', '--hidden', hidden])
  try {
    const t0 = performance.now()
    await swarm.start('joiner', ['--progress-every', '3600'], 'p1')
    const s = await until('the joiner to take part in a round', async () => {
      const st = await status(swarm, 'joiner')
      return (st?.ring?.completed ?? 0) >= 1 ? st : undefined
    })
    const takePartS = (performance.now() - t0) / 1000
    const sync = s!.syncs[0] ?? { ms: 0, bytes: 0, donors: 0 }
    return { takePartS, fetchMs: sync.ms, bytes: sync.bytes, donorsUsed: sync.donors }
  } finally {
    await swarm.stopAll()
  }
}

process.stdout.write(`bench-faults on ${new Date().toISOString()}; load average ${(await import('node:os')).loadavg().map(l => l.toFixed(2)).join(' ')}\n`)
await benchKills()
process.stdout.write('\n2. a joiner takes part (time from its start to its first completed round; state fetch alone)\n')
process.stdout.write('  hidden        state MB   donors  fetch ms  MB/s   take part s\n')
for (const hidden of MODELS) {
  for (const donors of [1, 3]) {
    const r = await benchJoin(hidden, donors)
    const mb = r.bytes / 1e6
    process.stdout.write(`  ${hidden.padEnd(12)}  ${mb.toFixed(1).padStart(8)}  ${String(r.donorsUsed).padStart(3)}/${donors}  ${String(r.fetchMs).padStart(8)}  ${(r.fetchMs > 0 ? mb / (r.fetchMs / 1000) : 0).toFixed(0).padStart(5)}  ${r.takePartS.toFixed(2).padStart(10)}\n`)
  }
}
