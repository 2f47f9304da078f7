/**
 * `/peer/shard/1.0.0` between real in-process libp2p nodes (TCP, noise,
 * yamux on loopback): a peer without the data set fetches its description and
 * shards from the one that has it, the hashes match and the data set loads
 * identically; a corrupted shard is rejected, nothing of it is left behind,
 * and the fetch moves on to a peer with a good copy. The frame decoders throw
 * only InvalidMessageError on random and mutated bytes.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import {
  FrameDecoder, MAX_FRAME_BYTES, SHARD_PROTOCOL, decodeFrames, decodeRequest, decodeResponse, encodeData, encodeError,
  encodeHeader, encodeRequest, prefixed
} from '../protocols/shard/index.ts'
import { ShardService, createDataDirShardStore, fetchDataset, fetchDescription, fetchShard, localShards } from '../node/shard-transfer/index.ts'
import { datasetsRoot, importDataset, loadImportedDataset, readDescription } from '../node/data/imported/index.ts'
import { loadDataset } from '../node/data/dataset.ts'
import { seededRandom } from '../node/data/random.ts'

async function node (): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

function csv (rows: number): string {
  const rand = seededRandom(11)
  const words = ['alpha', 'beta', 'gamma', 'delta', 'épsilon', 'zeta']
  const lines = ['x,kind,text,label']
  for (let i = 0; i < rows; i++) {
    lines.push(`${(rand() * 10).toFixed(4)},${['a', 'b', 'c'][i % 3]},"${words[i % 6]} ${words[(i * 7) % 6]}, ${i}",${rand() < 0.5 ? 'yes' : 'no'}`)
  }
  return `${lines.join('\n')}\n`
}

describe('shard fetch between libp2p nodes', () => {
  let base: string
  const nodes: Libp2p[] = []
  const services: ShardService[] = []
  let holder: Libp2p
  let corrupt: Libp2p
  let asker: Libp2p
  let holderDir: string
  let corruptDir: string
  let id: string

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'peer-data-shards-'))
    holderDir = join(base, 'holder')
    corruptDir = join(base, 'corrupt')
    const file = join(base, 'data.csv')
    writeFileSync(file, csv(4000))
    const r = await importDataset(file, { label: 'label', text: ['text'], shards: 4, buckets: 256, outDir: datasetsRoot(holderDir) })
    id = r.datasetId
    // a second holder whose copy of shard 1 has one byte flipped
    cpSync(datasetsRoot(holderDir), datasetsRoot(corruptDir), { recursive: true })
    const d = readDescription(join(datasetsRoot(corruptDir), id))
    const bad = join(datasetsRoot(corruptDir), id, d.shards[1].file)
    const bytes = readFileSync(bad)
    bytes[Math.floor(bytes.length / 2)] ^= 0xff
    writeFileSync(bad, bytes)

    holder = await node()
    corrupt = await node()
    asker = await node()
    nodes.push(holder, corrupt, asker)
    for (const a of nodes) for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
    services.push(new ShardService({ node: holder, store: createDataDirShardStore(holderDir) }))
    services.push(new ShardService({ node: corrupt, store: createDataDirShardStore(corruptDir) }))
    for (const s of services) await s.start()
  })

  after(async () => {
    for (const s of services) await s.stop()
    await Promise.all(nodes.map(async n => { await n.stop() }))
    rmSync(base, { recursive: true, force: true })
  })

  test('a single shard arrives whole and matches its hash', async () => {
    const d = readDescription(join(datasetsRoot(holderDir), id))
    const dest = mkdtempSync(join(base, 'single-'))
    const shard = d.shards[0]
    const r = await fetchShard(asker, holder.peerId, shard.sha256, dest)
    assert.equal(r.bytes, shard.bytes)
    assert.equal(createHash('sha256').update(readFileSync(r.path)).digest('hex'), shard.sha256)
    assert.deepEqual(readdirSync(dest), [`${shard.sha256}.arrow`])
  })

  test('a corrupted shard is rejected with ShardHashMismatchError and nothing is left behind', async () => {
    const d = readDescription(join(datasetsRoot(holderDir), id))
    const dest = mkdtempSync(join(base, 'reject-'))
    await assert.rejects(fetchShard(asker, corrupt.peerId, d.shards[1].sha256, dest), (err: Error & { expected?: string }) => {
      assert.equal(err.name, 'ShardHashMismatchError')
      assert.equal(err.expected, d.shards[1].sha256)
      return true
    })
    assert.deepEqual(readdirSync(dest), [])
    // the same holder's good shards still come through
    await fetchShard(asker, corrupt.peerId, d.shards[0].sha256, dest)
    assert.deepEqual(readdirSync(dest), [`${d.shards[0].sha256}.arrow`])
  })

  test('a shard the peer does not hold: ShardNotFoundError', async () => {
    const dest = mkdtempSync(join(base, 'missing-'))
    await assert.rejects(fetchShard(asker, holder.peerId, 'ab'.repeat(32), dest), { name: 'ShardNotFoundError' })
    assert.deepEqual(readdirSync(dest), [])
  })

  test('a whole data set: the corrupt copy is skipped for a good one; it loads exactly as on the holder', async () => {
    const askerDir = join(base, 'asker')
    const got: string[] = []
    const r = await fetchDataset(asker, [corrupt.peerId, holder.peerId], id, askerDir, { onShard: s => { got.push(`${s.sha256}@${s.peer}`) } })
    const d = r.description
    assert.equal(r.fetched.length, d.shards.length + 1)
    const bad = d.shards[1].sha256
    assert.equal(r.fetched.find(f => f.sha256 === bad)?.peer, holder.peerId.toString())
    assert.equal(r.fetched.filter(f => f.peer === corrupt.peerId.toString()).length, d.shards.length) // all but the bad one
    assert.deepEqual(localShards(askerDir, id).sort(), [...d.shards.map(s => s.sha256), d.test.sha256].sort())
    assert.equal(readdirSync(join(datasetsRoot(askerDir), id)).filter(f => f.endsWith('.part')).length, 0)
    const mine = loadImportedDataset(join(datasetsRoot(askerDir), id), id)
    const theirs = loadImportedDataset(join(datasetsRoot(holderDir), id), id)
    assert.equal(mine.train.n, theirs.train.n)
    assert.deepEqual(mine.train.x, theirs.train.x)
    assert.deepEqual(mine.test.y, theirs.test.y)
  })

  test('only some shards; the description is checked against the id', async () => {
    const dir = join(base, 'partial')
    const r = await fetchDataset(asker, [holder.peerId], id, dir, { shards: [2] })
    assert.deepEqual(r.fetched.map(f => f.sha256).sort(), [r.description.shards[2].sha256, r.description.test.sha256].sort())
    assert.throws(() => loadDataset(id, { dataDir: dir }), { name: 'IncompleteDatasetError' })
    await assert.rejects(fetchDescription(asker, holder.peerId, 'ds-0000000000000000', join(base, 'nobody')), { name: 'ShardNotFoundError' })
    assert.equal(existsSync(join(base, 'nobody', 'datasets', 'ds-0000000000000000')), false)
  })

  test('garbage on a stream gets an error or a reset, and the holder keeps serving', async () => {
    for (const junk of [new Uint8Array([0xff, 0xff, 0xff, 0xff]), prefixed(new Uint8Array([1, 9, 9])), prefixed(encodeHeader(5)), new Uint8Array([0x05, 1, 2])]) {
      const stream = await asker.dialProtocol(holder.peerId, SHARD_PROTOCOL)
      await stream.sink([junk])
      try {
        for await (const frame of decodeFrames(stream.source)) {
          const r = decodeResponse(frame)
          assert.equal(r.type, 'error')
        }
      } catch (err) {
        assert.ok(['StreamResetError', 'StreamStateError', 'InvalidMessageError', 'AbortError', 'StreamAbortedError'].includes((err as Error).name) || /reset|abort/i.test((err as Error).message), (err as Error).name)
      }
    }
    const d = readDescription(join(datasetsRoot(holderDir), id))
    const dest = mkdtempSync(join(base, 'after-junk-'))
    await fetchShard(asker, holder.peerId, d.test.sha256, dest)
    assert.ok(services[0].served > 0)
  })
})

test('decoders: random and mutated bytes only ever throw InvalidMessageError', () => {
  const valid = [
    encodeRequest({ kind: 'shard', sha256: 'a'.repeat(64) }),
    encodeRequest({ kind: 'description', datasetId: 'ds-0123456789abcdef' }),
    encodeHeader(123456789),
    encodeData(new Uint8Array([1, 2, 3])),
    encodeError('not-found', 'no such shard é')
  ]
  const onlyInvalid = (f: () => unknown): void => {
    try { f() } catch (err) {
      if ((err as Error).name !== 'InvalidMessageError') throw err
    }
  }
  const decodeAll = (bytes: Uint8Array, split: number): void => {
    const d = new FrameDecoder()
    for (const part of [bytes.subarray(0, split), bytes.subarray(split)]) {
      for (const frame of d.push(part)) {
        onlyInvalid(() => decodeRequest(frame))
        onlyInvalid(() => decodeResponse(frame))
      }
    }
    d.end()
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, split) => {
    onlyInvalid(() => decodeRequest(bytes))
    onlyInvalid(() => decodeResponse(bytes))
    onlyInvalid(() => { decodeAll(bytes, split % (bytes.length + 1)) })
  }), { numRuns: 2000 })
  fc.assert(fc.property(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), (frame, edits, cut) => {
    const bytes = prefixed(frame).slice()
    for (const [at, value] of edits) bytes[at % bytes.length] = value
    const truncated = bytes.subarray(0, bytes.length - (cut % 3))
    onlyInvalid(() => decodeRequest(truncated.subarray(1)))
    onlyInvalid(() => decodeResponse(truncated.subarray(1)))
    onlyInvalid(() => { decodeAll(truncated, cut % (truncated.length + 1)) })
  }), { numRuns: 2000 })
  // an oversized length prefix is refused before anything is allocated
  assert.throws(() => new FrameDecoder().push(new Uint8Array([0xff, 0xff, 0xff, 0x7f])), { name: 'InvalidMessageError' })
  assert.throws(() => new FrameDecoder().push(prefixed(new Uint8Array(MAX_FRAME_BYTES + 1))), { name: 'InvalidMessageError' })
  // round trips
  assert.deepEqual(decodeRequest(valid[0]), { kind: 'shard', sha256: 'a'.repeat(64) })
  assert.deepEqual(decodeRequest(valid[1]), { kind: 'description', datasetId: 'ds-0123456789abcdef' })
  assert.deepEqual(decodeResponse(valid[2]), { type: 'header', size: 123456789 })
  assert.deepEqual(decodeResponse(valid[4]), { type: 'error', code: 'not-found', reason: 'no such shard é' })
})
