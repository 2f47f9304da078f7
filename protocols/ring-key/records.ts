/**
 * The records of a data connection: after the preamble, every byte is in an AEAD record
 * `[plaintext length u32 LE][ciphertext][16-byte tag]`, the length authenticated as associated data, the nonce the
 * direction and a counter (0, 1, 2, … per connection, never sent: a replayed, dropped or reordered record fails
 * its tag). Record 0 is the open record (OPEN_MAGIC and the session id); every later record is one ring frame.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import type { CipherGCM, DecipherGCM, KeyObject } from 'node:crypto'
import {
  DEFAULT_CIPHER, DIRECTION_DIALER_TO_LISTENER, MAX_RECORDS_PER_KEY, MAX_RECORD_BYTES, NONCE_BYTES, OPEN_MAGIC,
  OPEN_RECORD_BYTES, PREAMBLE_BYTES, RECORD_HEADER_BYTES, SESSION_KEY_BYTES, TAG_BYTES
} from './constants.ts'
import type { RecordCipher } from './constants.ts'
import { decodePreamble, encodePreamble } from './codec.ts'
import { InvalidMessageError, KeyExhaustedError, RecordAuthError } from './errors.ts'

function nonce (counter: number): Buffer {
  const out = Buffer.alloc(NONCE_BYTES)
  out.writeUInt32LE(DIRECTION_DIALER_TO_LISTENER, 0)
  out.writeUInt32LE(counter % 2 ** 32, 4)
  out.writeUInt32LE(Math.floor(counter / 2 ** 32), 8)
  return out
}

function checkKey (key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.byteLength !== SESSION_KEY_BYTES) throw new RangeError(`key must be ${SESSION_KEY_BYTES} bytes`)
}

function checkMaxRecordBytes (maxRecordBytes: number): void {
  if (!Number.isInteger(maxRecordBytes) || maxRecordBytes < OPEN_RECORD_BYTES || maxRecordBytes > MAX_RECORD_BYTES) {
    throw new RangeError(`maxRecordBytes must be ${OPEN_RECORD_BYTES} … ${MAX_RECORD_BYTES}`)
  }
}

/** The plaintext of the open record of a session. */
export function openRecordPlaintext (sessionId: Uint8Array): Uint8Array {
  const out = new Uint8Array(OPEN_RECORD_BYTES)
  out.set(new TextEncoder().encode(OPEN_MAGIC))
  out.set(sessionId, OPEN_MAGIC.length)
  return out
}

/** Seals the dialer's side of a data connection. One sealer per connection: its key is never used by another. */
export class RecordSealer {
  /** A KeyObject: node:crypto then skips preparing the raw key for every record (4x cheaper per record). */
  readonly #key: KeyObject
  readonly #cipher: RecordCipher
  readonly #maxRecordBytes: number
  #counter = 0

  constructor (key: Uint8Array, init: { cipher?: RecordCipher, maxRecordBytes?: number } = {}) {
    const maxRecordBytes = init.maxRecordBytes ?? MAX_RECORD_BYTES
    checkKey(key)
    checkMaxRecordBytes(maxRecordBytes)
    this.#key = createSecretKey(key)
    this.#cipher = init.cipher ?? DEFAULT_CIPHER
    this.#maxRecordBytes = maxRecordBytes
  }

  /** The first bytes of the connection: the preamble, then the open record. Must be the sealer's first output. */
  opening (sessionId: Uint8Array): Uint8Array[] {
    if (this.#counter !== 0) throw new Error('the open record must be the first record of a connection')
    return [encodePreamble(sessionId), ...this.seal([openRecordPlaintext(sessionId)])]
  }

  /**
   * One record of the parts, concatenated: `[header, ...ciphertext parts, tag]`, to be written in this order.
   * The cipher writes into new buffers: the parts are not referenced once this returns (and are not copied
   * otherwise: each part goes through the cipher once, as it is).
   */
  seal (parts: Uint8Array[]): Uint8Array[] {
    if (this.#counter >= MAX_RECORDS_PER_KEY) throw new KeyExhaustedError(`${MAX_RECORDS_PER_KEY} records sealed with one key`)
    let length = 0
    for (const part of parts) length += part.byteLength
    if (length === 0 || length > this.#maxRecordBytes) throw new RangeError(`record of ${length} bytes outside 1 … ${this.#maxRecordBytes}`)
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES)
    header.writeUInt32LE(length, 0)
    // (ChaCha20-Poly1305's cipher object has the same AEAD methods as GCM's.)
    const cipher = createCipheriv(this.#cipher as 'aes-256-gcm', this.#key, nonce(this.#counter++), { authTagLength: TAG_BYTES }) as CipherGCM
    cipher.setAAD(header)
    const out: Uint8Array[] = [header]
    for (const part of parts) if (part.byteLength > 0) out.push(cipher.update(part))
    cipher.final()
    out.push(cipher.getAuthTag())
    return out
  }
}

/**
 * Opens the listener's side of a data connection, fed the bytes as they arrive: first the preamble (the session
 * is looked up with `keyFor`, which throws for a session it does not hold), then records. `push` returns each
 * record's plaintext once its tag has verified, the open record first (already checked against the session);
 * nothing unauthenticated is ever returned. A record's length is checked before its bytes are buffered (exactly
 * OPEN_RECORD_BYTES for record 0, at most `maxRecordBytes` after). Throws InvalidMessageError for a bad preamble
 * or length, RecordAuthError for a bad tag, whatever `keyFor` throws; once broken it stays broken.
 */
export class RecordOpener {
  readonly #keyFor: (sessionId: Uint8Array) => Uint8Array
  readonly #cipher: RecordCipher
  readonly #maxRecordBytes: number
  #key: KeyObject | null = null
  #sessionId: Uint8Array | null = null
  #counter = 0
  /** The preamble or a record header being assembled, and how much of it is filled. */
  #head = Buffer.alloc(PREAMBLE_BYTES)
  #headFilled = 0
  /** The current record's plaintext length, or −1 while reading a header. */
  #length = -1
  /**
   * The record body (ciphertext and tag) being assembled across chunks, in a buffer kept for the next record:
   * the cipher writes the plaintext into a new one, so this one is free again once a record is opened.
   */
  #partial: Uint8Array | null = null
  #scratch: Buffer | null = null
  #filled = 0
  #failed: Error | null = null

  constructor (init: { keyFor: (sessionId: Uint8Array) => Uint8Array, cipher?: RecordCipher, maxRecordBytes?: number }) {
    const maxRecordBytes = init.maxRecordBytes ?? MAX_RECORD_BYTES
    checkMaxRecordBytes(maxRecordBytes)
    this.#keyFor = init.keyFor
    this.#cipher = init.cipher ?? DEFAULT_CIPHER
    this.#maxRecordBytes = maxRecordBytes
  }

  /** The session the preamble named (null before it has arrived). */
  get sessionId (): Uint8Array | null {
    return this.#sessionId
  }

  /**
   * The records completed by this chunk. Where the chunk also holds a bad record, the good ones before it are
   * still returned and `failure` is set (the next push throws it): check it after taking them.
   */
  push (chunk: Uint8Array): Uint8Array[] {
    if (this.#failed !== null) throw this.#failed
    const records: Uint8Array[] = []
    try {
      this.#push(chunk, records)
    } catch (err) {
      this.#failed = err as Error
      this.#partial = null
      this.#scratch = null
      if (records.length === 0) throw err
    }
    return records
  }

  /**
   * Where the connection's next bytes may be read straight into, to be taken with `wrote`: the rest of the
   * record header being read, or of the record body being assembled; null before the preamble is through or
   * once broken (read anywhere and `push`). A header on its own, so that the body after it is read into its
   * own buffer too, not into the caller's and then copied. Valid until the next `push` or `wrote`.
   */
  readTarget (): Uint8Array | null {
    if (this.#failed !== null || this.#key === null) return null
    if (this.#partial !== null) return this.#partial.subarray(this.#filled)
    if (this.#length === -1) return this.#head.subarray(this.#headFilled, RECORD_HEADER_BYTES)
    return null
  }

  /** `bytes` more were read into `readTarget()`: the record they complete, if they do (as `push`). */
  wrote (bytes: number): Uint8Array[] {
    if (this.#failed !== null) throw this.#failed
    const target = this.readTarget()
    if (target === null || !Number.isInteger(bytes) || bytes < 0 || bytes > target.byteLength) {
      throw new RangeError(`wrote ${bytes} bytes where ${target?.byteLength ?? 0} were asked for`)
    }
    try {
      if (this.#partial === null) {
        this.#headFilled += bytes
        if (this.#headFilled === RECORD_HEADER_BYTES) this.#assemble(this.#beginRecord())
        return []
      }
      this.#filled += bytes
      return this.#filled === this.#partial.byteLength ? [this.#openPartial()] : []
    } catch (err) {
      this.#failed = err as Error
      this.#partial = null
      this.#scratch = null
      throw err
    }
  }

  /** Why the connection is broken, once it is. */
  get failure (): Error | null {
    return this.#failed
  }

  /** The connection ended: throws if it ended inside the preamble or a record. */
  end (): void {
    if (this.#failed !== null) throw this.#failed
    if (this.#headFilled !== 0 || this.#length !== -1 || this.#key === null) {
      this.#failed = new InvalidMessageError('data connection ended inside a record', 'truncated')
      throw this.#failed
    }
  }

  #push (chunk: Uint8Array, records: Uint8Array[]): void {
    let at = 0
    const end = chunk.byteLength
    while (at < end) {
      if (this.#key === null) {
        at += this.#fillHead(chunk, at, PREAMBLE_BYTES)
        if (this.#headFilled < PREAMBLE_BYTES) break
        const sessionId = decodePreamble(this.#head.subarray(0, PREAMBLE_BYTES))
        const key = this.#keyFor(sessionId)
        checkKey(key)
        this.#key = createSecretKey(key)
        this.#sessionId = sessionId
        this.#headFilled = 0
        continue
      }
      if (this.#length === -1) {
        at += this.#fillHead(chunk, at, RECORD_HEADER_BYTES)
        if (this.#headFilled < RECORD_HEADER_BYTES) break
        const need = this.#beginRecord()
        if (end - at >= need) {
          // The whole body is in this chunk: decrypt from a view, nothing assembled.
          records.push(this.#open(chunk.subarray(at, at + need)))
          at += need
          continue
        }
        this.#assemble(need)
        continue
      }
      const partial = this.#partial as Uint8Array
      const take = Math.min(partial.byteLength - this.#filled, end - at)
      partial.set(chunk.subarray(at, at + take), this.#filled)
      this.#filled += take
      at += take
      if (this.#filled === partial.byteLength) records.push(this.#openPartial())
    }
  }

  /** The record header is in: checks its length, and returns how many bytes its body takes (ciphertext and tag). */
  #beginRecord (): number {
    const length = this.#head.readUInt32LE(0)
    if (this.#counter === 0 && length !== OPEN_RECORD_BYTES) throw new InvalidMessageError(`open record of ${length} bytes, expected ${OPEN_RECORD_BYTES}`)
    if (length === 0) throw new InvalidMessageError('empty record')
    if (length > this.#maxRecordBytes) throw new InvalidMessageError(`record of ${length} bytes exceeds ${this.#maxRecordBytes}`, 'too-large')
    this.#length = length
    return length + TAG_BYTES
  }

  /** The body of `need` bytes is to be assembled, in the buffer kept for it. */
  #assemble (need: number): void {
    if (this.#scratch === null || this.#scratch.byteLength < need) this.#scratch = Buffer.allocUnsafe(need)
    this.#partial = this.#scratch.subarray(0, need)
    this.#filled = 0
  }

  /** The body assembled is complete: opens it. */
  #openPartial (): Uint8Array {
    const partial = this.#partial as Uint8Array
    this.#partial = null
    return this.#open(partial)
  }

  #fillHead (chunk: Uint8Array, at: number, size: number): number {
    const take = Math.min(size - this.#headFilled, chunk.byteLength - at)
    this.#head.set(chunk.subarray(at, at + take), this.#headFilled)
    this.#headFilled += take
    return take
  }

  /** Verifies and decrypts one record body (ciphertext then tag); the header is still in #head. */
  #open (body: Uint8Array): Uint8Array {
    const length = this.#length
    const decipher = createDecipheriv(this.#cipher as 'aes-256-gcm', this.#key as KeyObject, nonce(this.#counter), { authTagLength: TAG_BYTES }) as DecipherGCM
    decipher.setAAD(this.#head.subarray(0, RECORD_HEADER_BYTES))
    decipher.setAuthTag(body.subarray(length))
    // update() hands back plaintext before the tag is checked: it is not used unless final() succeeds.
    const plaintext = decipher.update(body.subarray(0, length))
    try {
      decipher.final()
    } catch {
      throw new RecordAuthError(`record ${this.#counter} does not authenticate (tampered, replayed, reordered or another key)`)
    }
    if (this.#counter === 0 && !Buffer.from(openRecordPlaintext(this.#sessionId as Uint8Array)).equals(plaintext)) {
      throw new InvalidMessageError('the open record does not name the session')
    }
    this.#counter++
    this.#length = -1
    this.#headFilled = 0
    return plaintext
  }
}
