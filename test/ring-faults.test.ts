/**
 * The fault matrix, after hivemind's: a member that dies before sending, mid-send or while reducing; one whose
 * connection drops; one that is slow past the timeout; a cancelled round; one that sends NaN/Inf, a wrong
 * length, an oversized frame, a frame of the wrong round or step. Each time every member's run returns
 * ok:false within a deadline, names the culprit where it can, nobody gets a sum; then the survivors (or
 * everyone, where the faulty member is still fit) complete the next round over the same, recovered streams.
 *
 * Real parts only: libp2p nodes over TCP on 127.0.0.1 (and node:net sockets for the TCP transport); the faulty
 * member runs a real Ring whose outbound frames pass through a tampering hook on their way to a real stream.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { DATA_HEADER_BYTES, FRAME_DATA, MAX_FRAME_BYTES } from '../protocols/allreduce/index.ts'
import { Ring, createLibp2pRingTransport, createTcpRingTransport, sumBuffer } from '../node/ring/index.ts'
import type { OutboundChannel, RingTransport, AllReduceResult, TcpAddress, TcpRingTransport } from '../node/ring/index.ts'

const T = 1000 // step and connect timeout of every round here
const BLOCK_BYTES = 64 * 4
const BLOCK = BLOCK_BYTES / 4
const N = 4
const LENGTH = N * 3 * BLOCK // three blocks per chunk
/**
 * A fault that needs no timeout is seen at once: no member's result may come from a timeout, and every one
 * comes well within two timeouts (slack for a loaded CI machine). One that needs a timeout: within the
 * connect or step timeout, an abort notice, and the same slack.
 */
const FAST_DEADLINE_MS = 2 * T
const TIMEOUT_DEADLINE_MS = 3 * T + 1000

const logger = process.env.RING_LOG === undefined ? undefined : (msg: string) => { process.stderr.write(`${msg}\n`) }

/** The fields of a data frame's header, as the tampering hook sees them. */
interface DataInfo { round: number, attempt: number, step: number, chunk: number, offset: number, length: number, nth: number }

/** Returns the parts to send instead (or the same); may also wait, or break things, before returning. */
type Hook = (parts: Uint8Array[], info: DataInfo, signal: AbortSignal) => Promise<Uint8Array[]> | Uint8Array[]

/** A real transport whose outbound data frames pass through `hook.current` (counted per round). */
function tampering (inner: RingTransport, hook: { current: Hook | null }): RingTransport {
  let nth = 0
  let lastRound = -1
  const wrap = (channel: OutboundChannel): OutboundChannel => ({
    get peer () { return channel.peer },
    get open () { return channel.open },
    async send (parts, signal) {
      const h = hook.current
      if (h !== null && parts[0][0] === FRAME_DATA && parts[0].byteLength === DATA_HEADER_BYTES) {
        const v = new DataView(parts[0].buffer, parts[0].byteOffset, parts[0].byteLength)
        const info = { step: v.getUint16(2, true), round: v.getUint32(4, true), attempt: v.getUint32(8, true), chunk: v.getUint32(12, true), offset: v.getUint32(16, true), length: v.getUint32(20, true), nth: 0 }
        if (info.round !== lastRound) { lastRound = info.round; nth = 0 }
        info.nth = ++nth
        parts = await h(parts, info, signal)
      }
      await channel.send(parts, signal)
    },
    flush: async signal => { await channel.flush(signal) },
    close: () => { channel.close() }
  })
  return {
    start: async () => { await inner.start() },
    stop: async () => { await inner.stop() },
    inbound: async (peer, signal) => await inner.inbound(peer, signal),
    outbound: async (peer, signal) => wrap(await inner.outbound(peer, signal))
  }
}

interface Cluster {
  ids: string[]
  rings: Ring[]
  nodes: Libp2p[]
  hook: { current: Hook | null }
  /** Resolves whatever a hook left waiting. */
  release: () => void
  released: Promise<void>
  close: () => Promise<void>
}

/**
 * N libp2p members on loopback; member 1 (B) is the one whose frames can be tampered with. `gather`: rounds
 * gather whole vectors as they would by default for this small vector (node/ring/layout.ts); otherwise every
 * round reduces chunks, the steps the scenarios name.
 */
async function cluster (gather = false): Promise<Cluster> {
  const nodes = await Promise.all(Array.from({ length: N }, async () => await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })))
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  // Connected all to all, as in a running swarm: rounds open streams, not connections (a noise handshake
  // on a loaded machine may take longer than the tight timeouts used here).
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) await nodes[i].dial(nodes[j].peerId)
  const hook: { current: Hook | null } = { current: null }
  const rings = nodes.map((node, i) => {
    const transport = createLibp2pRingTransport(node)
    return new Ring({ transport: i === 1 ? tampering(transport, hook) : transport, logger }, { blockBytes: BLOCK_BYTES, stepTimeoutMs: T, connectTimeoutMs: T, ...(gather ? {} : { gatherMaxBytes: 0 }) })
  })
  for (const ring of rings) await ring.start()
  let release: () => void = () => {}
  const released = new Promise<void>(resolve => { release = resolve })
  return {
    ids: nodes.map(n => n.peerId.toString()),
    rings,
    nodes,
    hook,
    release,
    released,
    close: async () => {
      release()
      for (const ring of rings) await ring.stop()
      await Promise.all(nodes.map(async n => { await n.stop() }))
    }
  }
}

const vectorOf = (i: number, length = LENGTH): Float32Array => Float32Array.from({ length }, (_, k) => ((k + 31 * i) % 97) - 48)
const sumOf = (members: number[], length = LENGTH): number[] => Array.from({ length }, (_, k) => members.reduce((s, i) => s + vectorOf(i, length)[k], 0))

interface Timed { result: AllReduceResult, ms: number }

/** Each ring's sum buffer, as the swarm's rounds give theirs (the receiver's SIMD path, common/simd-floats.ts). */
const sumBuffers = new WeakMap<Ring, Float32Array>()
const intoFor = (ring: Ring): Float32Array => {
  let into = sumBuffers.get(ring)
  if (into === undefined) sumBuffers.set(ring, into = sumBuffer(LENGTH))
  return into
}

/**
 * Runs one round of the listed members (indices into the cluster) on those of them that `run`, each with its
 * own optional abort signal.
 */
async function round (c: Cluster, r: number, members: number[], signals: Array<AbortSignal | undefined> = [], run: number[] = members): Promise<Timed[]> {
  const ids = members.map(i => c.ids[i])
  return await Promise.all(run.map(async (i, k) => {
    const started = performance.now()
    const result = await c.rings[i].run({ round: r, attempt: 0, members: ids, self: c.ids[i], vector: vectorOf(i), into: intoFor(c.rings[i]) }, signals[k])
    return { result, ms: performance.now() - started }
  }))
}

/** Every member failed, within the deadline; returns the results by member index. */
function allFailed (timed: Timed[], members: number[], deadline: number): Map<number, Extract<AllReduceResult, { ok: false }>> {
  const out = new Map<number, Extract<AllReduceResult, { ok: false }>>()
  timed.forEach(({ result, ms }, k) => {
    assert.equal(result.ok, false, `member ${members[k]} got a sum`)
    assert.ok(!('sum' in result), 'no partial result')
    assert.ok(ms <= deadline, `member ${members[k]} took ${ms.toFixed(0)} ms (deadline ${deadline})`)
    if (!result.ok) out.set(members[k], result)
  })
  return out
}

async function nextRoundSucceeds (c: Cluster, r: number, members: number[]): Promise<void> {
  c.hook.current = null
  const timed = await round(c, r, members)
  const expected = sumOf(members)
  timed.forEach(({ result }, k) => {
    assert.ok(result.ok, `member ${members[k]} in the next round: ${result.ok ? '' : `[${result.code}] ${result.reason}`}`)
    assert.deepEqual(Array.from(result.sum), expected)
  })
}

const A = 0
const B = 1 // the faulty one
const C = 2
const D = 3
const ALL = [A, B, C, D]
const SURVIVORS = [A, C, D]

/** Names B wherever anyone is named: the invalid-frame and lost-peer faults are traced to their sender. */
function blamesB (c: Cluster, failures: Map<number, { culprit?: string }>, who: number[]): void {
  for (const i of who) assert.equal(failures.get(i)?.culprit, c.ids[B], `member ${i} names B`)
}

interface Scenario {
  name: string
  /** What B's frames go through during the faulty round. */
  hook?: (c: Cluster, controllerB: AbortController) => Hook
  /** Done before the faulty round starts. */
  before?: (c: Cluster) => Promise<void>
  /** Whether B still takes part in the faulty round (false: it is gone already). */
  bRuns?: boolean
  deadline: number
  /** Who must name B as the culprit. */
  blamed: number[]
  /** Who takes part in the next round. */
  next: number[]
  check?: (failures: Map<number, { code: string, cause: string, culprit?: string, reason: string }>, c: Cluster) => void
}

const stopB = (c: Cluster): void => { void c.nodes[B].stop() }

const scenarios: Scenario[] = [
  {
    name: 'B is gone before the round starts (node stopped)',
    before: async c => { await c.nodes[B].stop() },
    bRuns: false,
    deadline: TIMEOUT_DEADLINE_MS,
    // A cannot dial it and blames it, unless the abort notice from C (which only sees silence: a timeout, no
    // one to blame for sure) comes round first; either way no one blames anybody else.
    blamed: [],
    next: SURVIVORS,
    check: f => { assert.equal(f.get(C)?.code, 'timeout') }
  },
  {
    name: 'B fails before sending any data (node stopped at its first data frame)',
    hook: c => async (parts, info) => {
      if (info.nth === 1) { await c.nodes[B].stop(); throw new Error('B is gone') }
      return parts
    },
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B fails mid-send (node stopped after two blocks of its first chunk)',
    hook: c => (parts, info) => { if (info.nth === 3) stopB(c); return parts },
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B fails while reducing (node stopped in reduce-scatter step 2)',
    hook: c => (parts, info) => { if (info.step === 1 && info.offset === BLOCK) stopB(c); return parts },
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B fails in the all-gather (node stopped at its first all-gather block)',
    hook: c => (parts, info) => { if (info.step === N - 1) stopB(c); return parts },
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B\'s connection to its successor drops mid-send; B stays up and takes part in the next round',
    hook: c => async (parts, info) => {
      if (info.nth === 2) await c.nodes[B].hangUp(c.nodes[C].peerId)
      return parts
    },
    deadline: FAST_DEADLINE_MS,
    blamed: [C],
    next: ALL
  },
  {
    name: 'B is slow past the step timeout',
    hook: c => async (parts, info) => {
      if (info.nth === 2) await Promise.race([c.released, new Promise(resolve => { setTimeout(resolve, 4 * T).unref() })])
      return parts
    },
    deadline: TIMEOUT_DEADLINE_MS,
    blamed: [],
    next: SURVIVORS,
    check: (f, c) => {
      // The slow member's successor times out waiting for it, unless the slow member's own timer (it cannot
      // send) fires first and it says so: a race of two timers started at about the same moment.
      assert.ok(['timeout', 'peer-aborted'].includes(f.get(C)?.code ?? ''), f.get(C)?.reason)
      assert.ok([...f.values()].some(x => x.code === 'timeout'))
      // (under load the step timer can fire while C is between blocks: the reason then names the step)
      if (f.get(C)?.code === 'timeout') assert.ok(f.get(C)?.reason.includes(`waiting for data from ${c.ids[B]}`) || /step \d+\/\d+ took longer than/.test(f.get(C)?.reason ?? ''), f.get(C)?.reason)
    }
  },
  {
    name: 'B\'s caller cancels the round',
    hook: (_c, controllerB) => (parts, info) => { if (info.nth === 2) controllerB.abort(); return parts },
    deadline: FAST_DEADLINE_MS,
    blamed: [],
    next: ALL,
    check: f => {
      assert.equal(f.get(B)?.code, 'cancelled')
      for (const i of SURVIVORS) assert.equal(f.get(i)?.code, 'peer-aborted')
      for (const i of ALL) assert.equal(f.get(i)?.culprit, undefined)
    }
  },
  {
    name: 'B sends NaN in the reduce-scatter',
    hook: () => (parts, info) => info.nth === 2 ? [parts[0], withValue(parts[1], 5, Number.NaN)] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => {
      assert.equal(f.get(C)?.code, 'invalid-frame')
      assert.match(f.get(C)?.reason ?? '', /non-finite value \(NaN\)/)
      // Everyone downstream learns what happened first, not only that a neighbour gave up.
      for (const i of SURVIVORS) assert.equal(f.get(i)?.cause, 'invalid-frame', `member ${i}`)
    }
  },
  {
    name: 'B sends +Inf in the all-gather',
    hook: () => (parts, info) => info.step === N && info.offset === 0 ? [parts[0], withValue(parts[1], 0, Infinity)] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.equal(f.get(C)?.code, 'invalid-frame') }
  },
  {
    name: 'B sends a frame whose header says one element more than it carries',
    hook: () => (parts, info) => info.nth === 2 ? [withHeader(parts[0], 20, info.length + 1), parts[1]] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B sends a block that overruns its chunk',
    hook: () => (parts, info) => info.step === 0 && info.offset === 2 * BLOCK
      ? [withHeader(parts[0], 20, info.length + 1), concat(parts[1], new Uint8Array(4))]
      : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.match(f.get(C)?.reason ?? '', /overrun/) }
  },
  {
    name: 'B sends an oversized frame',
    hook: () => (parts, info) => info.nth === 2 ? [new Uint8Array(MAX_FRAME_BYTES + 1).fill(FRAME_DATA, 0, 1)] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.match(f.get(C)?.reason ?? '', /exceeds/) }
  },
  {
    name: 'B sends data of the wrong round',
    hook: () => (parts, info) => info.nth === 2 ? [withHeader(parts[0], 4, info.round + 1), parts[1]] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.match(f.get(C)?.reason ?? '', /data of round/) }
  },
  {
    name: 'B sends data of the wrong step',
    hook: () => (parts, info) => info.nth === 2 ? [withHeader16(parts[0], 2, info.step + 1), parts[1]] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  }
]

function withValue (payload: Uint8Array, index: number, value: number): Uint8Array {
  const copy = payload.slice()
  new DataView(copy.buffer).setFloat32(index * 4, value, true)
  return copy
}

function withHeader (header: Uint8Array, at: number, value: number): Uint8Array {
  const copy = header.slice()
  new DataView(copy.buffer).setUint32(at, value, true)
  return copy
}

function withHeader16 (header: Uint8Array, at: number, value: number): Uint8Array {
  const copy = header.slice()
  new DataView(copy.buffer).setUint16(at, value, true)
  return copy
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a)
  out.set(b, a.byteLength)
  return out
}

/** Where rounds gather whole vectors (N − 1 steps, each a member's whole vector, the frames' chunk its position). */
const gatherScenarios: Scenario[] = [
  {
    name: 'B fails while it forwards a vector (node stopped at its first block of step 2)',
    hook: c => (parts, info) => { if (info.step === 1) stopB(c); return parts },
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS
  },
  {
    name: 'B forwards a vector with +Inf in it',
    hook: () => (parts, info) => info.step === 1 && info.offset === BLOCK ? [parts[0], withValue(parts[1], 3, Infinity)] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => {
      assert.equal(f.get(C)?.code, 'invalid-frame')
      assert.match(f.get(C)?.reason ?? '', /non-finite value \(Infinity\)/)
    }
  },
  {
    name: 'B sends a block that overruns the vector',
    hook: () => (parts, info) => info.step === 0 && info.offset === LENGTH - BLOCK
      ? [withHeader(parts[0], 20, info.length + 1), concat(parts[1], new Uint8Array(4))]
      : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.match(f.get(C)?.reason ?? '', /overrun/) }
  },
  {
    name: 'B forwards another member\'s vector than the one due',
    hook: () => (parts, info) => info.step === 1 ? [withHeader(parts[0], 12, (info.chunk + 1) % N), parts[1]] : parts,
    deadline: FAST_DEADLINE_MS,
    blamed: SURVIVORS,
    next: SURVIVORS,
    check: f => { assert.match(f.get(C)?.reason ?? '', /expected step 1 chunk/) }
  }
]

for (const [list, gather] of [[scenarios, false], [gatherScenarios, true]] as const) for (const s of list) {
  test(`fault${gather ? ', gathering whole vectors' : ''}: ${s.name}`, async () => {
    const c = await cluster(gather)
    try {
      // A healthy round first, so the fault hits streams that are open and in use, as in a running swarm.
      await nextRoundSucceeds(c, 1, ALL)
      await s.before?.(c)
      const controllerB = new AbortController()
      c.hook.current = s.hook?.(c, controllerB) ?? null
      const running = s.bRuns === false ? SURVIVORS : ALL
      const signals = running.map(i => (i === B ? controllerB.signal : undefined))
      const timed = await round(c, 2, ALL, signals, running)
      const failures = allFailed(timed, running, s.deadline)
      if (s.deadline === FAST_DEADLINE_MS) {
        for (const [i, f] of failures) assert.ok(f.code !== 'timeout' && !f.reason.includes('[timeout]'), `member ${i} waited for a timeout: ${f.reason}`)
      }
      blamesB(c, failures, s.blamed)
      // Whoever blames someone blames B (B's own view of its failure is its own business).
      for (const [i, f] of failures) {
        if (i !== B && f.culprit !== undefined) assert.equal(f.culprit, c.ids[B], `member ${i} blames only B (${f.reason})`)
      }
      s.check?.(failures, c)
      c.release()
      await nextRoundSucceeds(c, 3, s.next)
      await nextRoundSucceeds(c, 4, s.next)
    } finally {
      await c.close()
    }
  })
}

for (const gather of [false, true]) test(`a member behind its predecessor skips to the round the predecessor is in; stale frames are skipped${gather ? ' (2 members gathering)' : ''}`, async () => {
  const c = await cluster(gather)
  try {
    const pair = [A, B]
    const ids = pair.map(i => c.ids[i])
    // B is already in round 6 and waits for A's hello; A still runs round 5.
    const bAhead = c.rings[B].run({ round: 6, attempt: 0, members: ids, self: c.ids[B], vector: vectorOf(B), connectTimeoutMs: 5 * T })
    const aBehind = await c.rings[A].run({ round: 5, attempt: 0, members: ids, self: c.ids[A], vector: vectorOf(A) })
    assert.equal(aBehind.ok, false)
    if (!aBehind.ok) {
      assert.equal(aBehind.code, 'peer-aborted')
      assert.match(aBehind.reason, /already in round 6/)
    }
    // A catches up; B's hello for round 6 was kept for it, and B skips A's frames of round 5.
    const aCaughtUp = await c.rings[A].run({ round: 6, attempt: 0, members: ids, self: c.ids[A], vector: vectorOf(A) })
    const bResult = await bAhead
    assert.ok(aCaughtUp.ok && bResult.ok)
    assert.deepEqual(Array.from(aCaughtUp.sum), sumOf(pair))
    assert.deepEqual(Array.from(bResult.sum), sumOf(pair))
  } finally {
    await c.close()
  }
})

test('a ring that stops mid-round returns stopped, and its neighbours abort', async () => {
  const c = await cluster()
  try {
    c.hook.current = (parts, info) => { if (info.nth === 2) void c.rings[B].stop(); return parts }
    const timed = await round(c, 1, ALL)
    const failures = allFailed(timed, ALL, FAST_DEADLINE_MS + 500)
    assert.equal(failures.get(B)?.code, 'stopped')
    const after = await c.rings[B].run({ round: 2, attempt: 0, members: ALL.map(i => c.ids[i]), self: c.ids[B], vector: vectorOf(B) })
    assert.equal(after.ok, false)
    if (!after.ok) assert.equal(after.code, 'stopped')
    await nextRoundSucceeds(c, 3, SURVIVORS)
  } finally {
    await c.close()
  }
})

test('tcp transport: a member whose transport goes away mid-send makes the round abort; the survivors go on', async () => {
  const addresses = new Map<string, TcpAddress>()
  const ids = ALL.map(i => `tcp-${i}`)
  const transports: TcpRingTransport[] = ids.map(id => createTcpRingTransport({ self: id, resolve: peer => addresses.get(peer) }))
  const hook: { current: Hook | null } = { current: null }
  const rings = transports.map((t, i) => new Ring({ transport: i === B ? tampering(t, hook) : t, logger }, { blockBytes: BLOCK_BYTES, stepTimeoutMs: T, connectTimeoutMs: T }))
  for (let i = 0; i < rings.length; i++) {
    await rings[i].start()
    addresses.set(ids[i], transports[i].address())
  }
  try {
    const run = async (r: number, members: number[]): Promise<Timed[]> => await Promise.all(members.map(async i => {
      const started = performance.now()
      const result = await rings[i].run({ round: r, attempt: 0, members: members.map(m => ids[m]), self: ids[i], vector: vectorOf(i) })
      return { result, ms: performance.now() - started }
    }))
    for (const { result } of await run(1, ALL)) assert.ok(result.ok)
    hook.current = (parts, info) => { if (info.nth === 3) void transports[B].stop(); return parts }
    const failures = allFailed(await run(2, ALL), ALL, FAST_DEADLINE_MS)
    blamesB({ ids } as unknown as Cluster, failures, SURVIVORS)
    for (const r of [3, 4]) {
      for (const { result } of await run(r, SURVIVORS)) {
        assert.ok(result.ok, result.ok ? '' : result.reason)
        assert.deepEqual(Array.from(result.sum), sumOf(SURVIVORS))
      }
    }
  } finally {
    for (const ring of rings) await ring.stop()
  }
})
