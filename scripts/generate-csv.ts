/**
 * The benchmarks' generated CSV: mixed numeric, categorical and free-text
 * columns (`amount,age,score,ratio,city,segment,body,label`), quoted fields
 * with commas, about 1% of values missing and 1% of rows duplicated,
 * deterministic (seeded). `npm run bench:import` and `npm run bench:bigdata`
 * import it with `--label label --text body --missing drop`.
 */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { seededRandom } from '../node/data/random.ts'

const WORDS = (() => {
  const rand = seededRandom(1)
  const letters = 'abcdefghijklmnopqrstuvwxyz'
  return Array.from({ length: 3000 }, () => Array.from({ length: 2 + Math.floor(rand() * 8) }, () => letters[Math.floor(rand() * 26)]).join(''))
})()
const CITIES = ['Paris', 'Berlin', 'Zürich', 'Oslo', 'Kraków', 'São Paulo', 'Tokyo', 'Lagos', 'Lima', 'Cairo']

/** Writes about `mb` MB of CSV; returns rows written. */
export async function generate (path: string, mb: number): Promise<number> {
  const rand = seededRandom(42)
  const out = createWriteStream(path)
  out.write('amount,age,score,ratio,city,segment,body,label\n')
  const target = mb * 1e6
  let bytes = 0
  let rows = 0
  let previous = ''
  const maybe = (s: string): string => rand() < 0.01 ? '' : s
  while (bytes < target) {
    let line: string
    if (previous !== '' && rand() < 0.01) line = previous
    else {
      const words = Array.from({ length: 6 + Math.floor(rand() * 14) }, () => WORDS[Math.floor(Math.sqrt(rand()) * WORDS.length)])
      if (rand() < 0.3) words.splice(3, 0, 'quoted,')
      const label = rand() < 0.5 ? 'a' : rand() < 0.6 ? 'b' : 'c'
      line = [
        maybe((rand() * 1e4).toFixed(2)),
        maybe(String(18 + Math.floor(rand() * 60))),
        maybe((label === 'a' ? rand() * 50 : 25 + rand() * 75).toFixed(3)),
        maybe(rand().toFixed(5)),
        maybe(CITIES[Math.floor(rand() * CITIES.length)]),
        `seg${Math.floor(rand() * 50)}`,
        `"${words.join(' ').replace(/"/g, '""')}"`,
        label
      ].join(',') + '\n'
    }
    previous = line
    bytes += Buffer.byteLength(line)
    rows++
    if (!out.write(line)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
  return rows
}
