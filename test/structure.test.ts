/**
 * The module graph keeps the shape docs/architecture.md gives it: no import cycle among node/, protocols/ and
 * bin/ (static, type-only, re-export and dynamic imports all count), protocols/ never imports node/, and nothing
 * but the CLI imports the root actor (node/peer/index.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'

const root = join(import.meta.dirname, '..')

function sources (dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, e.name)
    if (e.isDirectory()) out.push(...sources(path))
    else if (/\.(ts|js)$/.test(e.name)) out.push(path)
  }
  return out
}

/** Each source file's relative imports (paths from the repository root). */
function graph (): Map<string, string[]> {
  const edges = new Map<string, string[]>()
  const spec = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm
  for (const file of ['node', 'protocols', 'bin'].flatMap(sources)) {
    const text = readFileSync(join(root, file), 'utf8')
    const deps: string[] = []
    for (const m of text.matchAll(spec)) {
      const target = normalize(join(dirname(file), m[1]))
      if (existsSync(join(root, target))) deps.push(target)
    }
    edges.set(file, deps)
  }
  return edges
}

/** The strongly connected components of more than one file (Tarjan). */
function cycles (edges: Map<string, string[]>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  let next = 0
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number))
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = []
      let w: string
      do {
        w = stack.pop() as string
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1) out.push(component.sort())
    }
  }
  for (const v of edges.keys()) if (!index.has(v)) visit(v)
  return out
}

test('no import cycles among node/, protocols/ and bin/ (type-only and dynamic imports included)', () => {
  const edges = graph()
  assert.ok(edges.size > 100, `read ${edges.size} files`)
  assert.deepEqual(cycles(edges), [])
  // the check sees a cycle where there is one
  assert.deepEqual(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']])
})

test('protocols/ never imports node/; only the CLI imports the root actor', () => {
  const edges = graph()
  for (const [file, deps] of edges) {
    if (file.startsWith('protocols/')) {
      for (const d of deps) assert.ok(d.startsWith('protocols/'), `${file} imports ${relative(root, join(root, d))}`)
    }
    if (!file.startsWith('node/cli/') && file !== 'node/peer/index.ts') {
      assert.ok(!deps.includes('node/peer/index.ts'), `${file} imports the root actor`)
    }
  }
})
