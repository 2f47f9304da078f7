/**
 * Accepted sockets that read into one shared buffer (`readingInto`, node/ring/socket-transport.ts; the keyed data
 * plane's listener reads this way): over real loopback TCP, two connections at once deliver every byte in
 * order into their own inbound channels, every chunk a view of the one buffer; the end of a stream still ends
 * the channel; a channel whose source keeps views of what it is given is refused; and the server still closes
 * once the sockets are gone (the accepted Socket whose handle moved no longer counts as a connection). With the
 * keyed data plane's records, the bodies are read straight into the opener's own buffer and open intact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createConnection, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { once } from 'node:events'
import { SocketInboundChannel, readingInto } from '../node/ring/socket-transport.ts'
import { RecordOpener, RecordSealer, SESSION_ID_BYTES, deriveSessionKey } from '../protocols/ring-key/index.ts'
import type { FrameSource } from '../node/ring/socket-transport.ts'

const FRAME_BYTES = 100_000

/** Cuts the bytes into frames of FRAME_BYTES (the last one shorter), copying what it keeps; notes each chunk's buffer. */
function copyingSource (chunkBuffers: ArrayBufferLike[]): FrameSource {
  let pending = new Uint8Array(0)
  return {
    push (chunk) {
      chunkBuffers.push(chunk.buffer)
      const joined = new Uint8Array(pending.byteLength + chunk.byteLength)
      joined.set(pending)
      joined.set(chunk, pending.byteLength)
      const frames: Uint8Array[] = []
      let at = 0
      while (joined.byteLength - at >= FRAME_BYTES) {
        frames.push(joined.slice(at, at + FRAME_BYTES))
        at += FRAME_BYTES
      }
      pending = joined.slice(at)
      return frames
    },
    end () {
      if (pending.byteLength > 0) throw new Error(`ended inside a frame (${pending.byteLength} bytes)`)
    }
  }
}

async function readAll (channel: SocketInboundChannel): Promise<Buffer> {
  const parts: Uint8Array[] = []
  const signal = AbortSignal.timeout(30_000)
  while (true) {
    const frame = await channel.read(signal)
    if (frame === null) return Buffer.concat(parts)
    parts.push(Buffer.from(frame)) // a frame is the reader's until its next read only
  }
}

test('two accepted sockets read into one shared buffer: every byte in order, every chunk a view of it', async () => {
  const shared = Buffer.allocUnsafe(256 * 1024)
  const chunkBuffers: ArrayBufferLike[] = []
  const channels: Array<Promise<Buffer>> = []
  const sockets: Socket[] = []
  const server = createServer({ pauseOnConnect: true }, accepted => {
    const socket = readingInto(accepted, shared)
    sockets.push(socket)
    const channel = new SocketInboundChannel(`client-${channels.length}`, socket, copyingSource(chunkBuffers), () => { socket.destroy() }, { owned: true })
    channels.push(readAll(channel))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  // 30 frames and a short one each: several MiB, so that reads fill the buffer and the two interleave
  const payloads = [randomBytes(30 * FRAME_BYTES + FRAME_BYTES), randomBytes(40 * FRAME_BYTES + FRAME_BYTES)]
  const clients = payloads.map(payload => {
    const client = createConnection({ host: '127.0.0.1', port })
    client.end(payload)
    return client
  })
  const deadline = Date.now() + 30_000
  while (channels.length < 2 && Date.now() < deadline) await new Promise(resolve => setImmediate(resolve))
  assert.equal(channels.length, 2, 'both connections accepted')
  const received = await Promise.all(channels)
  // the channels are in accept order, which need not be the clients' order: match by length
  const byLength = new Map(received.map(bytes => [bytes.byteLength, bytes]))
  for (const payload of payloads) assert.ok(byLength.get(payload.byteLength)?.equals(payload), `${payload.byteLength} bytes arrived whole and in order`)
  assert.ok(chunkBuffers.length >= 2, 'read in chunks')
  assert.ok(chunkBuffers.every(buffer => buffer === shared.buffer), 'every chunk is a view of the shared buffer')
  for (const client of clients) client.destroy()
  for (const socket of sockets) socket.destroy()
  await new Promise<void>((resolve, reject) => { server.close(err => { if (err != null) reject(err); else resolve() }) })
})

test('a socket that reads into a shared buffer refuses a channel whose source keeps views', async () => {
  const server = createServer({ pauseOnConnect: true })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const client = createConnection({ host: '127.0.0.1', port })
  const [accepted] = await once(server, 'connection') as [Socket]
  const socket = readingInto(accepted, Buffer.allocUnsafe(1024))
  assert.throws(() => new SocketInboundChannel('client', socket, copyingSource([]), () => {}), /copies what it keeps/)
  client.destroy()
  socket.destroy()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
})

test('sealed records over a socket that reads into a shared buffer: bodies read straight into the opener, every record intact', async () => {
  const sessionId = randomBytes(SESSION_ID_BYTES)
  const key = deriveSessionKey({ dialerShare: randomBytes(32), listenerShare: randomBytes(32), sessionId, dialer: 'a', listener: 'b' })
  const messages = Array.from({ length: 12 }, (_, i) => randomBytes(i % 3 === 0 ? 1024 * 1024 : 1000 + i * 50_000))
  const opener = new RecordOpener({ keyFor: () => key })
  let direct = 0
  const source = {
    push: (chunk: Uint8Array) => opener.push(chunk),
    end: () => { opener.end() },
    get failure () { return opener.failure },
    readTarget: () => opener.readTarget(),
    wrote: (bytes: number) => { direct += bytes; return opener.wrote(bytes) }
  }
  let channel: SocketInboundChannel | undefined
  let socket: Socket | undefined
  const server = createServer({ pauseOnConnect: true }, accepted => {
    socket = readingInto(accepted, Buffer.allocUnsafe(64 * 1024))
    const s = socket
    channel = new SocketInboundChannel('sealer', s, source, () => { s.destroy() }, { owned: true })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const client = createConnection({ host: '127.0.0.1', port })
  const sealer = new RecordSealer(key)
  for (const bytes of sealer.opening(sessionId)) client.write(bytes)
  for (const message of messages) for (const bytes of sealer.seal([message])) client.write(bytes)
  client.end()
  const deadline = Date.now() + 30_000
  while (channel === undefined && Date.now() < deadline) await new Promise(resolve => setImmediate(resolve))
  assert.ok(channel !== undefined, 'connection accepted')
  const received = await readAll(channel)
  // the open record (the session's proof), then every message in order
  assert.ok(received.subarray(received.byteLength - messages.reduce((n, m) => n + m.byteLength, 0)).equals(Buffer.concat(messages)), 'every record opened intact, in order')
  assert.ok(direct > 0, 'some bodies were read straight into the opener')
  client.destroy()
  socket?.destroy()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
})
