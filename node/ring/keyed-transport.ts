/**
 * The ring's default data path: control over libp2p, bytes over a direct TCP connection.
 *
 * Before a member first sends to its successor it opens a libp2p stream on `/peer/ring-key/1.0.0` (so only a
 * peer that holds the swarm key, passed noise and the allow-list can get this far); over it the two agree on a
 * fresh key (a random share from each, HKDF) and a session id, and the successor says its data-plane port. The
 * member then connects to the successor's host (the libp2p connection's remote address) on that port and sends
 * a clear preamble (the session id) and nothing but AEAD records sealed with that key: the first proves the
 * session, each later one is one ring frame. The listener drops a connection at the first thing that does not
 * check out (an unknown, expired or used session, a bad length, a tag that fails: tampered, replayed or
 * reordered), and the ring treats it as a lost stream. A session serves one connection, a key one session.
 *
 * Everything else (persistent channels, dials that outlive the caller, newest inbound wins, high-water marks)
 * is the socket transport's (`socket-transport.ts`).
 */
import type { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Connection, IncomingStreamData, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MAX_BLOCK_BYTES, MAX_FRAME_BYTES, StreamClosedError, TimeoutError } from '../../protocols/allreduce/index.ts'
import { prefixed, readFrame } from '../../protocols/common/index.ts'
import {
  DEFAULT_CIPHER, InvalidMessageError, KEY_PROTOCOL, KEY_REQUEST_TIMEOUT_MS, KEY_SHARE_BYTES, MAX_KEY_STREAMS,
  MAX_MESSAGE_BYTES, MAX_PENDING_SESSIONS_PER_PEER, MAX_UNAUTHENTICATED_CONNECTIONS, OPEN_TIMEOUT_MS, RecordOpener,
  RecordSealer, SESSION_ID_BYTES, SESSION_TTL_MS, TooManySessionsError, UnknownSessionError, decodeKeyRequest,
  decodeKeyResponse, deriveSessionKey, encodeKeyRequest, encodeKeyResponse
} from '../../protocols/ring-key/index.ts'
import type { RecordCipher } from '../../protocols/ring-key/index.ts'
import { SocketInboundChannel, SocketOutboundChannel, SocketRingTransport } from './socket-transport.ts'
import type { TcpAddress } from './socket-transport.ts'
import { timeoutSignal } from './transport.ts'
import type { RingTransport } from './transport.ts'

export interface KeyedRingTransportOptions {
  /** Interface the data plane listens on (default 127.0.0.1); `listenHostOf(--listen addresses)` is libp2p's. */
  host?: string
  /** Port to listen on (default 0: any free port; peers learn it in the key exchange). */
  port?: number
  /** The port told to peers, where the listener is reached through a port mapping (default: the listener's own). */
  announcePort?: number
  /** The records' AEAD (default DEFAULT_CIPHER, AES-256-GCM). Both ends must use the same. */
  cipher?: RecordCipher
  /** Bytes queued per socket before `send` waits (default KEYED_HIGH_WATER_BYTES). */
  highWaterBytes?: number
  /** Log lines (dropped connections, refused sessions). */
  logger?: (msg: string) => void
}

/**
 * The data plane's block: the largest a receiver accepts, so a record carries up to 1 MiB of vector. node:crypto
 * seals and opens a 1 MiB record at about 1.4 times the bytes per second of a 256 KiB one (each record pays for
 * a cipher object, a tag and its own output buffers), and a socket has no stream window the block must fit (the
 * reason for the 256 KiB default over libp2p's yamux). Small vectors still get smaller blocks (ring.ts).
 */
export const KEYED_BLOCK_BYTES = MAX_BLOCK_BYTES
/** Four blocks queued per socket, as SEND_HIGH_WATER_BYTES is for the default block. */
export const KEYED_HIGH_WATER_BYTES = 4 * KEYED_BLOCK_BYTES

/**
 * What every data connection the listener accepts reads into: one buffer shared by them all (socket-transport.ts
 * `readingInto`), a record's worth, since the opener copies what it keeps. A 16 MiB round over 3 members went
 * from 52.5-54.8 to 44.2-45.4 ms, a member's CPU from 34.6-35.2 to 28.3-29.1 ms, against node:net's own
 * buffer per read.
 */
export const KEYED_READ_BUFFER_BYTES = KEYED_BLOCK_BYTES

/** What the data plane has refused, for status and tests. */
export interface KeyedTransportCounters {
  /** Sessions handed out over libp2p. */
  sessionsIssued: number
  /** Data connections that proved a session. */
  accepted: number
  /** Data connections dropped: no or an unknown/used session, a bad record, a timeout, too many at once. */
  refused: number
}

export interface KeyedRingTransport extends RingTransport {
  /** The data plane's listening address (after `start()`). */
  address (): TcpAddress
  readonly counters: KeyedTransportCounters
}

/** The part of a libp2p node the transport uses. */
export type KeyedLibp2p = Pick<Libp2p, 'handle' | 'unhandle' | 'dial' | 'peerId'>

/** The host of a listen multiaddr (`/ip4/0.0.0.0/tcp/4001` → `0.0.0.0`): the data plane listens where libp2p does. */
export function listenHostOf (listen: readonly string[]): string {
  if (listen.length === 0) return '0.0.0.0'
  return multiaddr(listen[0]).toOptions().host
}

function hostOf (addr: Multiaddr): string {
  try {
    const options = addr.toOptions()
    if (options.transport === 'tcp' && (options.family === 4 || options.family === 6)) return options.host
  } catch {}
  throw new StreamClosedError(`no IP host in the connection's address ${addr.toString()}`)
}

/** Reads exactly one length-prefixed message of at most MAX_MESSAGE_BYTES (the shared framing: bounded, refuses an empty one). */
async function readMessage (source: Stream['source']): Promise<Uint8Array> {
  const frame = await readFrame(source, MAX_MESSAGE_BYTES)
  if (frame === null) throw new InvalidMessageError('key stream ended before its message', 'truncated')
  return frame
}

interface Session {
  peer: string
  key: Uint8Array
  timer: ReturnType<typeof setTimeout>
}

/** Sessions issued and not yet claimed by a data connection: each is claimed once, or expires. */
class Sessions {
  readonly #byId = new Map<string, Session>()
  readonly #perPeer = new Map<string, number>()

  /** A new session for `peer`, its key derived from its id (the id salts the key). */
  issue (peer: string, keyOf: (sessionId: Uint8Array) => Uint8Array): Uint8Array {
    const pending = this.#perPeer.get(peer) ?? 0
    if (pending >= MAX_PENDING_SESSIONS_PER_PEER) throw new TooManySessionsError(`${peer} holds ${pending} unclaimed sessions`)
    const sessionId = randomBytes(SESSION_ID_BYTES)
    const id = sessionId.toString('hex')
    const session: Session = { peer, key: keyOf(sessionId), timer: setTimeout(() => { this.#drop(id, session) }, SESSION_TTL_MS) }
    session.timer.unref()
    this.#byId.set(id, session)
    this.#perPeer.set(peer, pending + 1)
    return sessionId
  }

  /** The session a preamble names; UnknownSessionError if it was never issued, expired or is taken. */
  lookup (sessionId: Uint8Array): Session {
    const session = this.#byId.get(Buffer.from(sessionId).toString('hex'))
    if (session === undefined) throw new UnknownSessionError('unknown, expired or used session')
    return session
  }

  /** Takes the session for the one connection that proved it; false if another took it first. */
  claim (sessionId: Uint8Array, session: Session): boolean {
    const id = Buffer.from(sessionId).toString('hex')
    if (this.#byId.get(id) !== session) return false
    this.#drop(id, session)
    return true
  }

  clear (): void {
    for (const [id, session] of [...this.#byId]) this.#drop(id, session)
  }

  #drop (id: string, session: Session): void {
    if (this.#byId.get(id) !== session) return
    clearTimeout(session.timer)
    this.#byId.delete(id)
    const left = (this.#perPeer.get(session.peer) ?? 1) - 1
    if (left > 0) this.#perPeer.set(session.peer, left)
    else this.#perPeer.delete(session.peer)
  }
}

class KeyedTransport extends SocketRingTransport implements KeyedRingTransport {
  readonly #node: KeyedLibp2p
  readonly #self: string
  readonly #options: KeyedRingTransportOptions
  readonly #cipher: RecordCipher
  readonly #sessions = new Sessions()
  readonly #log: (msg: string) => void
  #unauthenticated = 0
  readonly counters: KeyedTransportCounters = { sessionsIssued: 0, accepted: 0, refused: 0 }
  readonly blockBytes = KEYED_BLOCK_BYTES

  constructor (node: KeyedLibp2p, options: KeyedRingTransportOptions) {
    super({ host: options.host, port: options.port }, { sharedReads: KEYED_READ_BUFFER_BYTES })
    this.#node = node
    this.#self = node.peerId.toString()
    this.#options = options
    this.#cipher = options.cipher ?? DEFAULT_CIPHER
    const logger = options.logger
    this.#log = logger === undefined ? () => {} : msg => { logger(`peer:ring:keyed ${msg}`) }
  }

  protected override async onStart (): Promise<void> {
    await this.#node.handle(KEY_PROTOCOL, data => { void this.#serve(data) }, {
      maxInboundStreams: MAX_KEY_STREAMS,
      maxOutboundStreams: MAX_KEY_STREAMS,
      // a relay's limits would cut the ring off mid-round, and a relayed peer's host is not where it listens
      runOnLimitedConnection: false
    })
  }

  protected override async onStop (): Promise<void> {
    await this.#node.unhandle(KEY_PROTOCOL).catch(() => {})
    this.#sessions.clear()
  }

  /** Dialer: agree on a session over libp2p, then connect to the successor's data plane and prove it. */
  protected async connect (peer: string, signal: AbortSignal): Promise<SocketOutboundChannel> {
    let connection: Connection
    try {
      connection = await this.#node.dial(peerIdFromString(peer), { signal })
    } catch (err) {
      throw new StreamClosedError(`cannot reach ${peer} over libp2p: ${(err as Error).message}`)
    }
    const host = hostOf(connection.remoteAddr)
    const share = randomBytes(KEY_SHARE_BYTES)
    let stream: Stream | undefined
    const onAbort = (): void => { stream?.abort(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
    let response
    try {
      stream = await connection.newStream(KEY_PROTOCOL, { signal, maxOutboundStreams: MAX_KEY_STREAMS, runOnLimitedConnection: false })
      await stream.sink([prefixed(encodeKeyRequest({ share }))])
      response = decodeKeyResponse(await readMessage(stream.source))
      await stream.close()
    } catch (err) {
      stream?.abort(err as Error)
      throw new StreamClosedError(`no data-plane session from ${peer}: ${(err as Error).message}`)
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
    const key = deriveSessionKey({ dialerShare: share, listenerShare: response.share, sessionId: response.sessionId, dialer: this.#self, listener: peer })
    const socket = await this.connectSocket(peer, { host, port: response.port }, signal)
    const sealer = new RecordSealer(key, { cipher: this.#cipher, maxRecordBytes: MAX_FRAME_BYTES })
    const channel = new SocketOutboundChannel(peer, socket, parts => sealer.seal(parts), this.#options.highWaterBytes ?? KEYED_HIGH_WATER_BYTES, { ownsWritten: true })
    channel.writeRaw(sealer.opening(response.sessionId))
    return channel
  }

  /** Listener, libp2p side: one request, one session, one answer. */
  async #serve ({ stream, connection }: IncomingStreamData): Promise<void> {
    const peer = connection.remotePeer.toString()
    const timer = setTimeout(() => { stream.abort(new TimeoutError(`no key request within ${KEY_REQUEST_TIMEOUT_MS} ms`)) }, KEY_REQUEST_TIMEOUT_MS)
    try {
      if (!this.started) throw new StreamClosedError('ring transport is stopped')
      const request = decodeKeyRequest(await readMessage(stream.source))
      const share = randomBytes(KEY_SHARE_BYTES)
      const port = this.#options.announcePort ?? this.address().port
      const sessionId = this.#sessions.issue(peer, id => deriveSessionKey({ dialerShare: request.share, listenerShare: share, sessionId: id, dialer: peer, listener: this.#self }))
      this.counters.sessionsIssued++
      await stream.sink([prefixed(encodeKeyResponse({ port, sessionId, share }))])
      await stream.close()
    } catch (err) {
      this.#log(`refused a key request from ${peer}: ${(err as Error).message}`)
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Listener, data side: nothing is read past the preamble and the open record until they check out. */
  protected accept (socket: Socket): void {
    const from = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
    const refuse = (why: string): void => {
      this.counters.refused++
      this.#log(`dropped a data connection from ${from}: ${why}`)
      socket.destroy()
    }
    if (this.#unauthenticated >= MAX_UNAUTHENTICATED_CONNECTIONS) {
      refuse(`${this.#unauthenticated} connections already waiting to prove a session`)
      return
    }
    this.#unauthenticated++
    let pending = true
    const settle = (): void => {
      if (pending) this.#unauthenticated--
      pending = false
    }
    socket.once('close', settle)
    let session: Session | undefined
    const opener = new RecordOpener({
      cipher: this.#cipher,
      maxRecordBytes: MAX_FRAME_BYTES,
      keyFor: sessionId => {
        session = this.#sessions.lookup(sessionId)
        return session.key
      }
    })
    // Each record is one frame. Whatever does not check out destroys the socket at once; records that
    // authenticated before a bad one are still the sender's and are read first, then the error (a lost stream).
    const channel: SocketInboundChannel = new SocketInboundChannel('(unauthenticated)', socket, opener, err => { socket.destroy(err) }, {
      sourceError: (err: Error): Error => new StreamClosedError(`stream from ${channel.peer} failed: ${err.message}`),
      // The opener copies what it keeps of a chunk, and a record's plaintext is a buffer of its own.
      owned: true
    })
    channel.read(timeoutSignal(OPEN_TIMEOUT_MS, 'the open record')).then(first => {
      const sessionId = opener.sessionId
      if (first === null || session === undefined || sessionId === null) throw new UnknownSessionError('connection closed before it proved a session')
      if (!this.#sessions.claim(sessionId, session)) throw new UnknownSessionError('session already used')
      settle()
      this.counters.accepted++
      channel.identify(session.peer)
      this.register(channel)
    }).catch((err: Error) => { refuse(err.message) })
  }
}

/**
 * The keyed ring transport over the given libp2p node (see the file's header). `start()` opens the data-plane
 * listener and registers `/peer/ring-key/1.0.0`; as with the libp2p transport, the caller makes the members'
 * libp2p addresses known to the node before a round dials them.
 */
export function createKeyedRingTransport (node: KeyedLibp2p, options: KeyedRingTransportOptions = {}): KeyedRingTransport {
  return new KeyedTransport(node, options)
}
