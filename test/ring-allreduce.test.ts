import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { DATA_HEADER_BYTES, DONE_BYTES, HELLO_BYTES, PROTOCOL } from '../protocols/allreduce/index.ts'
import { Ring, chunkSpans, createLibp2pRingTransport, createTcpRingTransport, elementsSent, gathers, roundError, sendChunk, stepCount, sumBuffer, simdKernelsOf } from '../node/ring/index.ts'
import type { AllReduceResult, TcpAddress } from '../node/ring/index.ts'

/** Small blocks so that even short vectors take several frames per chunk. */
const BLOCK_BYTES = 64 * 4
const BLOCK_ELEMENTS = BLOCK_BYTES / 4
const MAX_N = 5

interface Member { id: string, ring: Ring }

/** RING_LOG=1 prints the rings' logs. */
const logger = process.env.RING_LOG === undefined ? undefined : (msg: string) => { process.stderr.write(`${msg}\n`) }

/** How the rings of a describe block run their rounds: the default (small vectors and rings of 2 gather whole vectors), or always reducing chunks. */
type Mode = 'auto' | 'reduce'
const ringInit = (mode: Mode): { blockBytes: number, gatherMaxBytes?: number } => ({ blockBytes: BLOCK_BYTES, ...(mode === 'reduce' ? { gatherMaxBytes: 0 } : {}) })

async function libp2pMembers (count: number, mode: Mode): Promise<{ members: Member[], nodes: Libp2p[] }> {
  const nodes = await Promise.all(Array.from({ length: count }, async () => await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })))
  for (const a of nodes) {
    for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  }
  const members = nodes.map(node => ({ id: node.peerId.toString(), ring: new Ring({ transport: createLibp2pRingTransport(node), logger }, ringInit(mode)) }))
  for (const m of members) await m.ring.start()
  return { members, nodes }
}

async function tcpMembers (count: number, mode: Mode): Promise<Member[]> {
  const addresses = new Map<string, TcpAddress>()
  const members = Array.from({ length: count }, (_, i) => {
    const id = `tcp-member-${i}`
    const transport = createTcpRingTransport({ self: id, resolve: peer => addresses.get(peer) })
    return { id, transport, ring: new Ring({ transport, logger }, ringInit(mode)) }
  })
  for (const m of members) {
    await m.ring.start()
    addresses.set(m.id, m.transport.address())
  }
  return members
}

/** Small integers: every partial sum is exact in float32, whatever order the ring adds in. */
function integerVectors (n: number, length: number, seed: number): Float32Array[] {
  return Array.from({ length: n }, (_, i) => Float32Array.from({ length }, (_, k) => ((k * 7 + i * 13 + seed) % 201) - 100))
}

function plainSum (vectors: Float32Array[]): Float64Array {
  const out = new Float64Array(vectors[0].length)
  for (const v of vectors) for (let k = 0; k < v.length; k++) out[k] += v[k]
  return out
}

let round = 0

/** One round over the given members, in that order; every member's result. */
async function allReduce (members: Member[], vectors: Float32Array[]): Promise<AllReduceResult[]> {
  const ids = members.map(m => m.id)
  const r = round++
  return await Promise.all(members.map(async (m, i) => await m.ring.run({ round: r, attempt: 0, members: ids, self: m.id, vector: vectors[i], stepTimeoutMs: 5000 })))
}

function sums (results: AllReduceResult[]): Float32Array[] {
  return results.map((r, i) => {
    assert.ok(r.ok, `member ${i}: ${r.ok ? '' : `[${r.code}] ${r.reason}`}`)
    return r.sum
  })
}

/** Lengths around every edge: empty, shorter than the ring, one block, uneven chunks, several blocks per chunk. */
const lengthsFor = (n: number): number[] => [...new Set([0, 1, n - 1, n, n + 1, 2 * n + 1, BLOCK_ELEMENTS * n - 1, BLOCK_ELEMENTS * n * 3 + 7, 10_007])]

for (const [kind, mode] of [['libp2p', 'auto'], ['tcp', 'auto'], ['libp2p', 'reduce'], ['tcp', 'reduce']] as const) {
  describe(`all-reduce over ${kind}${mode === 'reduce' ? ', every round reducing chunks' : ''}`, () => {
    let all: Member[] = []
    let nodes: Libp2p[] = []
    before(async () => {
      if (kind === 'libp2p') ({ members: all, nodes } = await libp2pMembers(MAX_N, mode))
      else all = await tcpMembers(MAX_N, mode)
    })
    after(async () => {
      for (const m of all) await m.ring.stop()
      await Promise.all(nodes.map(async node => { await node.stop() }))
    })

    for (let n = 2; n <= MAX_N; n++) {
      test(`N = ${n}: the result is exactly the plain sum, for lengths that do not divide evenly`, async () => {
        // A different order of the same peers each time: rings reuse streams between whichever neighbours they have.
        const members = all.slice(0, n).reverse()
        if (n % 2 === 1) members.push(members.shift() as Member)
        for (const length of lengthsFor(n)) {
          const vectors = integerVectors(n, length, length)
          const copies = vectors.map(v => v.slice())
          const results = await allReduce(members, vectors)
          const expected = plainSum(vectors)
          for (const sum of sums(results)) {
            assert.equal(sum.length, length)
            assert.deepEqual(Array.from(sum), Array.from(expected), `N=${n} length=${length}`)
          }
          assert.deepEqual(vectors, copies, 'inputs are not modified')
          // Bandwidth: member i sends its hello, 2(N−1)/N of the vector (reducing chunks) or N − 1 whole vectors
          // (gathering them: rings of 2, small vectors), one header per block and N−1 done tokens, nothing else.
          const spans = chunkSpans(length, n)
          const gather = mode === 'auto' && gathers(length, n)
          if (mode === 'auto' && length <= 1000) assert.ok(gather, 'a small vector is gathered')
          results.forEach((r, i) => {
            let blocks = 0
            const sent = gather ? (n - 1) * length : elementsSent(length, n, i)
            if (gather) blocks = (n - 1) * Math.ceil(length / BLOCK_ELEMENTS)
            else for (let t = 0; t < stepCount(n); t++) blocks += Math.ceil(spans[sendChunk(i, t, n)].length / BLOCK_ELEMENTS)
            assert.equal(r.stats.bytesSent, HELLO_BYTES + sent * 4 + blocks * DATA_HEADER_BYTES + (n - 1) * DONE_BYTES)
            assert.equal(r.stats.steps, stepCount(n))
          })
        }
      })
    }

    test('random floats: every member ends with the same bits, within float tolerance of the plain sum', async () => {
      const members = all.slice(0, 4)
      const length = 9_001
      const vectors = members.map(() => Float32Array.from({ length }, () => (Math.random() - 0.5) * 1e3))
      const results = sums(await allReduce(members, vectors))
      const status = members[2].ring.status()
      assert.deepEqual(status?.members, members.map(m => m.id))
      assert.equal(status?.state, 'done')
      assert.equal(status?.last?.ok, true)
      assert.ok((status?.last?.stats.algbw ?? 0) > 0)
      const expected = plainSum(vectors)
      for (const sum of results) {
        assert.deepEqual(Buffer.from(sum.buffer), Buffer.from(results[0].buffer), 'identical on every member')
        for (let k = 0; k < length; k++) assert.ok(Math.abs(sum[k] - expected[k]) <= 1e-3 * Math.max(1, Math.abs(expected[k])), `element ${k}`)
      }
    })

    test('bf16: every member ends with the same bits, the exact tail is the float32 sum, the rest within bfloat16 rounding; half the bytes', async () => {
      const exact = 5
      for (const n of [2, 3, 4]) {
        const members = all.slice(0, n)
        const ids = members.map(m => m.id)
        for (const length of [exact, 3 * BLOCK_ELEMENTS * n + 11, 10_007]) {
          const vectors = members.map((_, i) => Float32Array.from({ length }, (_, k) => k >= length - exact ? 1000 + 97 * i + k : (Math.random() - 0.5) * 10 ** (k % 7 - 2)))
          const copies = vectors.map(v => v.slice())
          const r = round++
          const into = (): Float32Array => (r % 2 === 0 ? sumBuffer(length) : new Float32Array(length))
          const results = await Promise.all(members.map(async (m, i) => await m.ring.run({ round: r, attempt: 0, members: ids, self: m.id, vector: vectors[i], into: into(), stepTimeoutMs: 5000, compression: 'bf16', exact })))
          const got = sums(results)
          assert.deepEqual(vectors, copies, 'inputs are not modified')
          for (const sum of got) assert.deepEqual(Buffer.from(sum.buffer, sum.byteOffset, length * 4), Buffer.from(got[0].buffer, got[0].byteOffset, length * 4), `N=${n} length=${length}: identical on every member`)
          const expected = plainSum(vectors)
          const gather = mode === 'auto' && gathers(length, n)
          const half = gather ? 0 : length - exact
          const bits = new Uint32Array(got[0].buffer, got[0].byteOffset, length)
          for (let k = 0; k < length; k++) {
            if (k >= length - exact) {
              assert.equal(got[0][k], expected[k], `N=${n} length=${length}: element ${k} is exact`)
              continue
            }
            if (k >= half) {
              // a gathering round (a small vector) stays float32
              assert.ok(Math.abs(got[0][k] - expected[k]) <= 1e-6 * vectors.reduce((a, v) => a + Math.abs(v[k]), 0), `element ${k}: float32`)
              continue
            }
            assert.equal(bits[k] & 0xffff, 0, `element ${k} is a bfloat16`)
            const scale = vectors.reduce((a, v) => a + Math.abs(v[k]), 0)
            assert.ok(Math.abs(got[0][k] - expected[k]) <= 2 ** -8 * (n + 1) * scale, `N=${n} length=${length}: element ${k}: ${got[0][k]} against ${expected[k]}`)
          }
          // bytes: each block all bfloat16 (2 bytes an element) or all float32, cut at the tail
          const spans = gather ? null : chunkSpans(length, n)
          results.forEach((res, i) => {
            let bytes = HELLO_BYTES + (n - 1) * DONE_BYTES
            if (spans === null) {
              bytes += (n - 1) * (length * 4 + Math.ceil(length / BLOCK_ELEMENTS) * DATA_HEADER_BYTES)
            } else {
              for (let t = 0; t < stepCount(n); t++) {
                const { start, length: len } = spans[sendChunk(i, t, n)]
                for (let off = 0, count = 0; off < len; off += count) {
                  const at = start + off
                  count = Math.min(BLOCK_ELEMENTS, len - off, at < half ? half - at : Infinity)
                  bytes += DATA_HEADER_BYTES + count * (at < half ? 2 : 4)
                }
              }
            }
            assert.equal(res.stats.bytesSent, bytes, `N=${n} length=${length} member ${i}: bytes sent`)
          })
        }
      }
    })

    if (mode === 'reduce') {
      test('bf16 against float32, or another exact tail: a mismatch at the hello', async () => {
        const [a, b, c] = all
        const ids = [a.id, b.id, c.id]
        for (const specs of [[{ compression: 'bf16' as const }, {}, {}], [{ compression: 'bf16' as const, exact: 3 }, { compression: 'bf16' as const, exact: 3 }, { compression: 'bf16' as const, exact: 4 }]]) {
          const r = round++
          const results = await Promise.all([a, b, c].map(async (m, i) => await m.ring.run({ round: r, attempt: 0, members: ids, self: m.id, vector: new Float32Array(100), stepTimeoutMs: 2000, connectTimeoutMs: 2000, ...specs[i] })))
          assert.ok(results.every(res => !res.ok && (res.code === 'mismatch' || res.code === 'peer-aborted')), JSON.stringify(results.map(x => x.ok ? 'ok' : x.code)))
          assert.ok(results.some(res => !res.ok && res.code === 'mismatch' && /bfloat16/.test(res.reason)))
        }
        const vectors = integerVectors(3, 50, 2)
        assert.deepEqual(Array.from(sums(await allReduce([a, b, c], vectors))[0]), Array.from(plainSum(vectors)))
      })
    }

    test('summing into plain arrays (JavaScript loops) and into sum buffers (SIMD) gives the same bits', async () => {
      for (const n of [2, 3]) {
        const members = all.slice(0, n)
        const ids = members.map(m => m.id)
        const length = 10_007
        const vectors = members.map(() => Float32Array.from({ length }, () => (Math.random() - 0.5) * 1e3))
        const run = async (into: (i: number) => Float32Array): Promise<Float32Array[]> => {
          const r = round++
          return sums(await Promise.all(members.map(async (m, i) => await m.ring.run({ round: r, attempt: 0, members: ids, self: m.id, vector: vectors[i], into: into(i), stepTimeoutMs: 5000 }))))
        }
        const plain = await run(() => new Float32Array(length))
        const simd = await run(() => sumBuffer(length))
        assert.ok(simd.every(s => simdKernelsOf(s) !== null), 'the sums are in the sum buffers given')
        for (let i = 0; i < n; i++) assert.deepEqual(Buffer.from(simd[i].buffer, 0, length * 4), Buffer.from(plain[i].buffer), `N=${n}, member ${i}`)
      }
    })

    if (kind === 'libp2p') {
      test('streams are kept open between rounds and reused, one per neighbour and direction', async () => {
        const members = all.slice(0, 3)
        const streamIds = (): string[] => nodes.flatMap(node => node.getConnections().flatMap(c => c.streams))
          .filter(s => s.protocol === PROTOCOL).map(s => `${s.direction}:${s.id}`).sort()
        sums(await allReduce(members, integerVectors(3, 100, 0)))
        const before = streamIds()
        for (let i = 0; i < 3; i++) sums(await allReduce(members, integerVectors(3, 100, i)))
        assert.deepEqual(streamIds(), before, 'no stream opened or closed by later rounds')
        for (const node of nodes) {
          for (const c of node.getConnections()) {
            const outbound = c.streams.filter(s => s.protocol === PROTOCOL && s.direction === 'outbound')
            assert.ok(outbound.length <= 1, 'at most one outbound ring stream per connection')
          }
        }
      })
    }

    test('N = 1 returns the input unchanged, without touching the network', async () => {
      const vector = Float32Array.from([1.5, -2, 3])
      const r = await all[0].ring.run({ round: round++, attempt: 0, members: [all[0].id], self: all[0].id, vector })
      assert.ok(r.ok)
      assert.deepEqual(r.sum, vector)
      assert.notEqual(r.sum, vector, 'a copy: the caller may change either')
      assert.equal(r.stats.bytesSent, 0)
    })

    test('an unusable spec is refused before anything is sent', async () => {
      const m = all[0]
      const bad = [
        { members: [m.id, m.id], why: /duplicate/ },
        { members: ['someone-else'], why: /not a member/ },
        { members: [], why: /no members/ }
      ]
      for (const { members, why } of bad) {
        const r = await m.ring.run({ round: round++, attempt: 0, members, self: m.id, vector: new Float32Array(3) })
        assert.equal(r.ok, false)
        if (!r.ok) {
          assert.equal(r.code, 'invalid-spec')
          assert.match(r.reason, why)
          const err = roundError(r)
          assert.equal(err.name, 'RoundAbortedError')
          assert.equal(err.code, 'invalid-spec')
        }
      }
    })

    test('members that disagree on the member list or the vector length abort at the hello, and blame no one', async () => {
      const [a, b, c] = all
      const list = [a.id, b.id, c.id]
      // c has the same neighbours but another list (rotated): only the hash can tell.
      const disagreements: Array<{ lists: string[][], lengths: number[] }> = [
        { lists: [list, list, [b.id, c.id, a.id]], lengths: [10, 10, 10] },
        { lists: [list, list, list], lengths: [10, 10, 11] }
      ]
      for (const { lists, lengths } of disagreements) {
        const r = round++
        const results = await Promise.all([a, b, c].map(async (m, i) => await m.ring.run({
          round: r, attempt: 0, members: lists[i], self: m.id, vector: new Float32Array(lengths[i]), stepTimeoutMs: 2000, connectTimeoutMs: 2000
        })))
        for (const res of results) {
          assert.equal(res.ok, false)
          if (!res.ok) {
            assert.equal(res.culprit, undefined)
            assert.ok(res.code === 'mismatch' || res.code === 'peer-aborted', res.code)
          }
          assert.ok(res.stats.ms < 1500, `found at the hello, not by a timeout: ${JSON.stringify(results.map(x => x.ok ? "ok" : x.code + " " + x.reason))}`)
        }
        assert.ok(results.some(res => !res.ok && res.code === 'mismatch'))
      }
      // The same members agree on the next round.
      const vectors = integerVectors(3, 50, 1)
      const ok = sums(await allReduce([a, b, c], vectors))
      assert.deepEqual(Array.from(ok[2]), Array.from(plainSum(vectors)))
    })
  })
}
