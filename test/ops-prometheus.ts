/** A strict reader of the Prometheus text format, for the ops tests. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'

export interface Sample { name: string, labels: Record<string, string>, value: number }

/** Parses the Prometheus text exposition format strictly enough to catch a malformed line. */
export function parsePrometheus (text: string): { samples: Sample[], types: Map<string, string> } {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  const seen = new Set<string>()
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*'
  const sampleRe = new RegExp(`^(${name})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\]|\\\\.)*",?)*)\\})? ([^ ]+)(?: (-?\\d+))?$`)
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue
    let m: RegExpExecArray | null
    if ((m = new RegExp(`^# HELP (${name}) .*$`).exec(line)) !== null) continue
    if ((m = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`).exec(line)) !== null) {
      assert.ok(!types.has(m[1]), `line ${i + 1}: a second TYPE for ${m[1]}`)
      types.set(m[1], m[2])
      continue
    }
    m = sampleRe.exec(line)
    assert.ok(m !== null, `line ${i + 1} is not Prometheus text: ${line}`)
    // as Prometheus reads it (Go's ParseFloat): NaN and Inf in any case
    const special = /^(nan|[+-]?inf)$/i.test(m[3])
    const value = special ? (/nan/i.test(m[3]) ? NaN : m[3].startsWith('-') ? -Infinity : Infinity) : Number(m[3])
    assert.ok(special || !Number.isNaN(value), `line ${i + 1}: value ${m[3]}`)
    const labels: Record<string, string> = {}
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v
    const family = m[1].replace(/_(bucket|sum|count|total|created)$/, '')
    assert.ok(types.has(m[1]) || types.has(family), `line ${i + 1}: ${m[1]} has no TYPE`)
    const series = `${m[1]}{${m[2] ?? ''}}`
    assert.ok(!seen.has(series), `line ${i + 1}: ${series} appears twice`)
    seen.add(series)
    samples.push({ name: m[1], labels, value })
  }
  return { samples, types }
}

export const valueOf = (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined =>
  samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

/**
 * `promtool check metrics` (Debian's `prometheus` package) on a scrape: its exit code and what it said (the
 * lint problems, one a line); null where promtool is not installed.
 */
export function promtoolCheck (text: string): { code: number | null, problems: string } | null {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 })
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null
  if (r.error !== undefined) throw r.error
  return { code: r.status, problems: `${r.stdout}${r.stderr}`.trim() }
}

/** Why a promtool test skips. */
export const NO_PROMTOOL = 'promtool is not installed (apt-get install prometheus; .ci/run does): metric names are not linted'
