/**
 * Duplicate rows, found in one streaming pass: each row is reduced to a
 * 64-bit hash, kept in an open-addressing table of 8-byte slots (two u32
 * halves), at most half full. Memory is 8–32 bytes per distinct row, nothing
 * per byte of input. Two different rows share a 64-bit hash with probability
 * about n²/2^65 (10^-7 for a million rows); such a row would be dropped as a
 * duplicate, a risk we accept for not keeping the rows themselves.
 */

/** Two independent 32-bit hashes of the row's values (and of where values are missing), as [hi, lo]. */
export function rowHash (values: ReadonlyArray<string | null>, use: ArrayLike<number>): [number, number] {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (let k = 0; k < use.length; k++) {
    const v = values[use[k]]
    if (v === null) {
      // missing differs from every string, the empty one included
      a = Math.imul(a ^ 0x1f, 0x01000193)
      b = Math.imul(b ^ 0x2e, 0x5bd1e995)
    } else {
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i)
        a = Math.imul(a ^ c, 0x01000193)
        b = Math.imul(b ^ c, 0x5bd1e995)
        b ^= b >>> 15
      }
    }
    // a separator, so that ("ab", "c") and ("a", "bc") differ
    a = Math.imul(a ^ 0x1e, 0x01000193)
    b = Math.imul(b ^ 0x1e, 0x5bd1e995)
    b ^= b >>> 15
  }
  return [fmix(a), fmix(b ^ use.length)]
}

function fmix (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A set of 64-bit hashes; `add` says whether the hash was new. */
export class HashSet64 {
  private table: Uint32Array
  private mask: number
  size = 0

  /** Room for `expected` hashes without growing. */
  constructor (expected = 0) {
    let slots = 1024
    while (slots < 2 * (expected + 1)) slots *= 2
    this.table = new Uint32Array(2 * slots)
    this.mask = slots - 1
  }

  add (hi: number, lo: number): boolean {
    // (0, 0) marks an empty slot
    if (hi === 0 && lo === 0) lo = 1
    if ((this.size + 1) * 2 > this.mask + 1) this.grow()
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.mask
    for (;;) {
      const h = this.table[2 * i]
      const l = this.table[2 * i + 1]
      if (h === 0 && l === 0) {
        this.table[2 * i] = hi
        this.table[2 * i + 1] = lo
        this.size++
        return true
      }
      if (h === hi && l === lo) return false
      i = (i + 1) & this.mask
    }
  }

  /** Bytes held by the table. */
  get bytes (): number {
    return this.table.byteLength
  }

  private grow (): void {
    const old = this.table
    this.table = new Uint32Array(old.length * 2)
    this.mask = (this.mask << 1) | 1
    this.size = 0
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0) this.add(old[i], old[i + 1])
    }
  }
}

/** One bit per row, growing: which rows of the input were kept (pass 1 decides, pass 2 reads). */
export class BitSet {
  private bits = new Uint8Array(1024)

  set (i: number): void {
    const byte = i >>> 3
    if (byte >= this.bits.length) {
      const next = new Uint8Array(Math.max(this.bits.length * 2, byte + 1))
      next.set(this.bits)
      this.bits = next
    }
    this.bits[byte] |= 1 << (i & 7)
  }

  has (i: number): boolean {
    const byte = i >>> 3
    return byte < this.bits.length && (this.bits[byte] & (1 << (i & 7))) !== 0
  }
}
