/**
 * Float32 arrays that live in a WebAssembly memory of their own (`simdFloats`), and the loops the step's data
 * path runs over them, 4 floats at a time in wasm SIMD:
 * - the ring receiver's checked add and copy (exchange.ts `addCheckedFrom`, `copyChecked`: about 1.6-2 ns a
 *   float in JavaScript here, 0.4-0.5 ns in SIMD with the block copied in; at 16 MiB over 3 members that was
 *   12 ms of a member's 50-60 ms of CPU per round, in a profile);
 * - the trainer's scaling of the update vector (times the sample count in `flattenUpdate`, divided by the
 *   swarm's in `unflattenUpdate`);
 * - a bf16 round's conversions (docs/ring.md, "bf16 rounds"): narrowing float32 to bfloat16 (8 at a time:
 *   `NarrowRoom`, and in place: `FloatKernels.roundBf16`) and widening back before the add or copy
 *   (`addFromBf16`, `copyBf16`), bit for bit `narrowFloats` and `widenFloats`.
 *
 * An array's memory holds the array, then an optional staging area, where a received block is copied (the
 * cipher's output lies outside wasm memory) before the add. The memory never grows, so the array's view never
 * detaches; an array that cannot have a memory of its own (over wasm32's 4 GiB) is a plain array, and its
 * callers take the JavaScript loops (`simdKernelsOf` says which).
 *
 * Same results as the JavaScript loops, bit for bit: f32x4.add, .mul and .div are IEEE float32 operations,
 * which is what `Math.fround(a op b)` gives for two floats (double rounding is harmless for +, × and ÷ of
 * float32s in float64). The check is the loops' too: a lane sums `v − v`, 0 for every finite v, NaN for good
 * once a v is NaN or ±Inf.
 */
import {
  BR_IF, END, F32X4_ADD, F32X4_DIV, F32X4_MUL, F32X4_NE, F32X4_SPLAT, F32X4_SUB, I16X8_NARROW_I32X4_U, I32_ADD, I32_CONST,
  I32_LT_U, I32_SHL, I32X4_ADD, I32X4_EQ, I32X4_EXTEND_HIGH_I16X8_U, I32X4_EXTEND_LOW_I16X8_U, I32X4_SHL, I32X4_SHR_U,
  I32X4_SPLAT, LOCAL_GET, LOCAL_SET, LOCAL_TEE, LOOP, SIMD, V128_AND, V128_ANDNOT, V128_ANY_TRUE, V128_LOAD, V128_STORE,
  name, section, sleb, uleb, wasm
} from './wasm.ts'
import type { WasmMemory } from './wasm.ts'

const PAGE_BYTES = 65536
const MAX_PAGES = 65536

/**
 * Functions on byte addresses, `bytes` a positive multiple of 16:
 * - `add(dst, src, bytes)`: dst += src; 1 if a value of `src` is not finite, else 0;
 * - `check(src, bytes)`: the same answer, nothing written;
 * - `mul(at, bytes, f)`, `div(at, bytes, f)`: every float of at … times f, or divided by f, in place.
 */
function moduleBytes (): Uint8Array {
  /** A function body's code, and how to append to it. */
  const emitter = (): { c: number[], get: (l: number) => void, set: (l: number) => void, simd: (op: number, ...imm: number[]) => void } => {
    const c: number[] = []
    return {
      c,
      get: l => { c.push(LOCAL_GET, ...uleb(l)) },
      set: l => { c.push(LOCAL_SET, ...uleb(l)) },
      simd: (op, ...imm) => { c.push(SIMD, ...uleb(op), ...imm) }
    }
  }
  const fn = (add: boolean): number[] => {
    // params: (dst, src, bytes) or (src, bytes); locals: the byte offset k, then v128 v and acc
    const [DST, SRC, BYTES] = add ? [0, 1, 2] : [-1, 0, 1]
    const K = add ? 3 : 2
    const V = K + 1
    const ACC = K + 2
    const { c, get, set, simd } = emitter()
    c.push(LOOP, 0x40)
    get(SRC); get(K); c.push(I32_ADD); simd(V128_LOAD, 4, 0); set(V)
    get(ACC); get(V); get(V); simd(F32X4_SUB); simd(F32X4_ADD); set(ACC)
    if (add) {
      get(DST); get(K); c.push(I32_ADD)
      get(DST); get(K); c.push(I32_ADD); simd(V128_LOAD, 4, 0); get(V); simd(F32X4_ADD)
      simd(V128_STORE, 4, 0)
    }
    get(K); c.push(I32_CONST, 16, I32_ADD, LOCAL_TEE, ...uleb(K)); get(BYTES); c.push(I32_LT_U, BR_IF, 0)
    c.push(END)
    // a NaN lane is the one unequal to itself
    get(ACC); get(ACC); simd(F32X4_NE); simd(V128_ANY_TRUE)
    c.push(END)
    const body = [...uleb(2), ...uleb(1), 0x7f, ...uleb(2), 0x7b, ...c]
    return [...uleb(body.length), ...body]
  }
  const scale = (op: number): number[] => {
    // params: (at, bytes, f); locals: the byte offset k, then v128 f splat
    const [AT, BYTES, F, K, S] = [0, 1, 2, 3, 4]
    const { c, get, set, simd } = emitter()
    get(F); simd(F32X4_SPLAT); set(S)
    c.push(LOOP, 0x40)
    get(AT); get(K); c.push(I32_ADD)
    get(AT); get(K); c.push(I32_ADD); simd(V128_LOAD, 4, 0); get(S); simd(op)
    simd(V128_STORE, 4, 0)
    get(K); c.push(I32_CONST, 16, I32_ADD, LOCAL_TEE, ...uleb(K)); get(BYTES); c.push(I32_LT_U, BR_IF, 0)
    c.push(END)
    c.push(END)
    const body = [...uleb(2), ...uleb(1), 0x7f, ...uleb(1), 0x7b, ...c]
    return [...uleb(body.length), ...body]
  }
  const narrowFn = (keep: boolean): number[] => {
    // params: (src, dst, bytes): bytes of bfloat16 out at dst, from twice as many of float32 at src; locals: the
    // out offset k, the source address a, then v128 v, hi, h and the splats 0xffff, 0x7fff, 1, 0x7f80
    const [SRC, DST, BYTES, K, A, V, HI, H, M16, HALF, ONE, EXP] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    const { c, get, set, simd } = emitter()
    const splat = (value: number, local: number): void => { c.push(I32_CONST, ...sleb(value)); simd(I32X4_SPLAT); set(local) }
    splat(0xffff, M16); splat(0x7fff, HALF); splat(1, ONE); splat(0x7f80, EXP)
    /** The rounded upper half of the 4 floats at a + offset, left on the stack (stored back shifted with `keep`). */
    const rounded = (offset: number): void => {
      get(A); simd(V128_LOAD, 4, offset); set(V)
      get(V); c.push(I32_CONST, 16); simd(I32X4_SHR_U); set(HI)
      get(HI)
      // the carry: (low half + 0x7fff + (hi & 1)) >> 16, none where the exponent is all ones (NaN, ±Inf)
      get(V); get(M16); simd(V128_AND); get(HALF); simd(I32X4_ADD); get(HI); get(ONE); simd(V128_AND); simd(I32X4_ADD)
      c.push(I32_CONST, 16); simd(I32X4_SHR_U)
      get(HI); get(EXP); simd(V128_AND); get(EXP); simd(I32X4_EQ)
      simd(V128_ANDNOT); simd(I32X4_ADD); set(H)
      if (keep) { get(A); get(H); c.push(I32_CONST, 16); simd(I32X4_SHL); simd(V128_STORE, 4, offset) }
      get(H)
    }
    c.push(LOOP, 0x40)
    get(SRC); get(K); c.push(I32_CONST, 1, I32_SHL, I32_ADD); set(A)
    get(DST); get(K); c.push(I32_ADD)
    rounded(0); rounded(16); simd(I16X8_NARROW_I32X4_U)
    simd(V128_STORE, 4, 0)
    get(K); c.push(I32_CONST, 16, I32_ADD, LOCAL_TEE, ...uleb(K)); get(BYTES); c.push(I32_LT_U, BR_IF, 0)
    c.push(END)
    c.push(END)
    const body = [...uleb(2), ...uleb(2), 0x7f, ...uleb(7), 0x7b, ...c]
    return [...uleb(body.length), ...body]
  }
  const widenFn = (): number[] => {
    // params: (src, dst, bytes): bytes of bfloat16 at src, out as twice as many of float32 at dst; locals: the
    // in offset k, the out address d, then v128 v
    const [SRC, DST, BYTES, K, D, V] = [0, 1, 2, 3, 4, 5]
    const { c, get, set, simd } = emitter()
    c.push(LOOP, 0x40)
    get(DST); get(K); c.push(I32_CONST, 1, I32_SHL, I32_ADD); set(D)
    get(SRC); get(K); c.push(I32_ADD); simd(V128_LOAD, 4, 0); set(V)
    get(D); get(V); simd(I32X4_EXTEND_LOW_I16X8_U); c.push(I32_CONST, 16); simd(I32X4_SHL); simd(V128_STORE, 4, 0)
    get(D); get(V); simd(I32X4_EXTEND_HIGH_I16X8_U); c.push(I32_CONST, 16); simd(I32X4_SHL); simd(V128_STORE, 4, 16)
    get(K); c.push(I32_CONST, 16, I32_ADD, LOCAL_TEE, ...uleb(K)); get(BYTES); c.push(I32_LT_U, BR_IF, 0)
    c.push(END)
    c.push(END)
    const body = [...uleb(2), ...uleb(2), 0x7f, ...uleb(1), 0x7b, ...c]
    return [...uleb(body.length), ...body]
  }
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // types: 0 (i32, i32, i32) → i32, 1 (i32, i32) → i32, 2 (i32, i32, f32) → (), 3 (i32, i32, i32) → ()
    ...section(1, [4, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 3, 0x7f, 0x7f, 0x7d, 0, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]),
    ...section(3, [7, 0, 1, 2, 2, 3, 3, 3]),
    ...section(7, [7, ...name('add'), 0x00, 0, ...name('check'), 0x00, 1, ...name('mul'), 0x00, 2, ...name('div'), 0x00, 3,
      ...name('narrow'), 0x00, 4, ...name('narrowKeep'), 0x00, 5, ...name('widen'), 0x00, 6]),
    ...section(10, [7, ...fn(true), ...fn(false), ...scale(F32X4_MUL), ...scale(F32X4_DIV), ...narrowFn(false), ...narrowFn(true), ...widenFn()])
  ])
}

let compiled: object | null = null

/** The kernels of one array of `simdFloats`, at element offsets of the array. */
export class FloatKernels {
  readonly #array: Float32Array
  readonly #bytes: Uint8Array
  readonly #staging: Float32Array
  readonly #stagingBytes: Uint8Array
  readonly #stagingAt: number
  /** The whole memory, for the few values the SIMD loops leave (a memory that never grows: the view stays valid). */
  readonly #memory: DataView
  readonly #add: (dst: number, src: number, bytes: number) => number
  readonly #check: (src: number, bytes: number) => number
  readonly #mul: (at: number, bytes: number, f: number) => void
  readonly #div: (at: number, bytes: number, f: number) => void
  readonly #narrow: (src: number, dst: number, bytes: number) => void
  readonly #narrowKeep: (src: number, dst: number, bytes: number) => void
  readonly #widen: (src: number, dst: number, bytes: number) => void

  constructor (memory: WasmMemory, array: Float32Array, stagingAt: number, stagingBytes: number) {
    compiled ??= new wasm.Module(moduleBytes())
    const exports = new wasm.Instance(compiled, { env: { memory } }).exports
    this.#add = exports.add as (dst: number, src: number, bytes: number) => number
    this.#check = exports.check as (src: number, bytes: number) => number
    this.#mul = exports.mul as (at: number, bytes: number, f: number) => void
    this.#div = exports.div as (at: number, bytes: number, f: number) => void
    this.#narrow = exports.narrow as (src: number, dst: number, bytes: number) => void
    this.#narrowKeep = exports.narrowKeep as (src: number, dst: number, bytes: number) => void
    this.#widen = exports.widen as (src: number, dst: number, bytes: number) => void
    this.#array = array
    this.#bytes = new Uint8Array(memory.buffer, 0, array.byteLength)
    this.#stagingAt = stagingAt
    this.#staging = new Float32Array(memory.buffer, stagingAt, stagingBytes >>> 2)
    this.#stagingBytes = new Uint8Array(memory.buffer, stagingAt, stagingBytes)
    this.#memory = new DataView(memory.buffer)
  }

  /** True for the array itself (not a view of part of it). */
  holds (array: Float32Array): boolean {
    return array.buffer === this.#array.buffer && array.byteOffset === 0 && array.length === this.#array.length
  }

  /**
   * array[at …] = base[at …] + the block's floats (`payload`: little-endian float32s, any alignment, at most
   * the staging area's bytes); returns the index in the block of its first non-finite value, or −1.
   */
  addFrom (at: number, base: Float32Array, payload: Uint8Array): number {
    if (payload.byteLength > this.#stagingBytes.byteLength) throw new RangeError(`a block of ${payload.byteLength} bytes, staging for ${this.#stagingBytes.byteLength}`)
    this.#stagingBytes.set(payload)
    return this.#addStaged(at, base, payload.byteLength >>> 2)
  }

  /**
   * array[at …] = base[at …] + the block's bfloat16s widened (`payload`: little-endian u16s, any alignment, at
   * most half the staging area's bytes); returns the index in the block of its first non-finite value, or −1.
   */
  addFromBf16 (at: number, base: Float32Array, payload: Uint8Array): number {
    const n = payload.byteLength >>> 1
    this.#stageBf16(payload, this.#stagingAt, n)
    return this.#addStaged(at, base, n)
  }

  /** array[at …] = the block's bfloat16s widened; returns the index in the block of its first non-finite value, or −1. */
  copyBf16 (at: number, payload: Uint8Array): number {
    const n = payload.byteLength >>> 1
    this.#stageBf16(payload, at * 4, n)
    return this.#checkAt(at, n)
  }

  /** array[at … at + n) rounded to bfloat16 in place (nearest, ties to even), as `narrowFloats` rounds what it sends. */
  roundBf16 (at: number, n: number): void {
    // the bfloat16s go to the staging area, unused
    this.#narrowed(this.#narrowKeep, at, n, 0, true)
  }

  /**
   * array[at … at + n) narrowed to bfloat16 into the staging area at element `roomAt` (rounded as `narrowFloats`
   * rounds): their bytes, a view of the staging area.
   */
  narrowTo (at: number, n: number, roomAt: number): Uint8Array {
    const out = this.#narrowed(this.#narrow, at, n, roomAt, false)
    return new Uint8Array(out.buffer, out.byteOffset, n * 2)
  }

  #narrowed (kernel: (src: number, dst: number, bytes: number) => void, at: number, n: number, roomAt: number, keep: boolean): Uint16Array {
    if ((roomAt + n) * 2 > this.#stagingBytes.byteLength) throw new RangeError(`${n} bfloat16s at ${roomAt}, staging for ${this.#stagingBytes.byteLength / 2}`)
    const out = new Uint16Array(this.#stagingBytes.buffer, this.#stagingAt + roomAt * 2, n)
    const whole = n & ~7
    if (whole > 0) kernel(at * 4, this.#stagingAt + roomAt * 2, whole * 2)
    if (whole < n) narrowFloats(this.#array, at + whole, n - whole, out.subarray(whole), keep)
    return out
  }

  /**
   * Widens a bfloat16 block into float32s at byte address `dst` of this memory: its bytes are staged in the
   * upper half of the staging area first (the widening reads each 16 bytes before its writes can reach them
   * when `dst` is the staging area itself).
   */
  #stageBf16 (payload: Uint8Array, dst: number, n: number): void {
    if (n * 4 > this.#stagingBytes.byteLength) throw new RangeError(`a bfloat16 block of ${n} values, staging for ${this.#stagingBytes.byteLength / 4}`)
    const from = this.#stagingAt + n * 2
    this.#stagingBytes.set(payload, n * 2)
    const whole = n & ~7
    if (whole > 0) this.#widen(from, dst, whole * 2)
    const memory = this.#memory
    for (let k = whole; k < n; k++) memory.setUint32(dst + k * 4, memory.getUint16(from + k * 2, true) << 16, true)
  }

  /** array[at …] = base[at …] + the n floats staged; returns the index of the first non-finite one, or −1. */
  #addStaged (at: number, base: Float32Array, n: number): number {
    this.#array.set(base.subarray(at, at + n), at)
    const whole = n & ~3
    let bad = whole > 0 ? this.#add(at * 4, this.#stagingAt, whole * 4) : 0
    const array = this.#array
    const staging = this.#staging
    for (let k = whole; k < n; k++) {
      const v = staging[k]
      if (v - v !== 0) bad = 1
      array[at + k] += v
    }
    return bad === 0 ? -1 : firstNonFinite(staging, n)
  }

  /** array[at …] = the block's floats; returns the index in the block of its first non-finite value, or −1. */
  copy (at: number, payload: Uint8Array): number {
    const n = payload.byteLength >>> 2
    this.#bytes.set(payload, at * 4)
    return this.#checkAt(at, n)
  }

  /** The index among array[at … at + n) of the first non-finite value, or −1. */
  #checkAt (at: number, n: number): number {
    const whole = n & ~3
    let bad = whole > 0 ? this.#check(at * 4, whole * 4) : 0
    const array = this.#array
    for (let k = whole; k < n; k++) {
      const v = array[at + k]
      if (v - v !== 0) bad = 1
    }
    return bad === 0 ? -1 : firstNonFinite(array.subarray(at), n)
  }

  /** array[from … to) times f (a float32), in place. */
  scale (from: number, to: number, f: number): void {
    const whole = (to - from) & ~3
    if (whole > 0) this.#mul(from * 4, whole * 4, f)
    scaleLoop(this.#array, from + whole, to, f)
  }

  /** array[from … to) divided by d (a float32), in place. */
  divide (from: number, to: number, d: number): void {
    const whole = (to - from) & ~3
    if (whole > 0) this.#div(from * 4, whole * 4, d)
    divideLoop(this.#array, from + whole, to, d)
  }
}

function scaleLoop (array: Float32Array, from: number, to: number, f: number): void {
  const g = Math.fround(f)
  for (let k = from; k < to; k++) array[k] *= g
}

function divideLoop (array: Float32Array, from: number, to: number, d: number): void {
  const e = Math.fround(d)
  for (let k = from; k < to; k++) array[k] /= e
}

/**
 * float32 → bfloat16, rounded to nearest even: `count` floats of `from` at `at` into `out` (from 0). NaN and ±Inf
 * stay non-finite (a receiver refuses them, as it does in float32); a finite float within half a bfloat16 step
 * of float32's largest rounds to Inf, and is refused the same way. With `writeBack`, `from` takes the rounded
 * values too. The JavaScript loop; `NarrowRoom` and `FloatKernels.roundBf16` run it in SIMD.
 */
export function narrowFloats (from: Float32Array, at: number, count: number, out: Uint16Array, writeBack: boolean): void {
  // int32 views and small ints throughout: a Uint32Array's upper half would be doubles to V8
  const bits = new Int32Array(from.buffer, from.byteOffset + at * 4, count)
  for (let k = 0; k < count; k++) {
    const u = bits[k]
    const hi = u >>> 16
    // the carry: 1 when the lower half is over half a step, or exactly half with an odd upper half; never for
    // NaN and ±Inf (all exponent bits set: + 0x80 reaches bit 15)
    out[k] = hi + ((((u & 0xffff) + 0x7fff + (hi & 1)) >> 16) & ~(((hi & 0x7f80) + 0x80) >> 15))
  }
  if (writeBack) for (let k = 0; k < count; k++) bits[k] = out[k] << 16
}

/** bfloat16 → float32 (exact): the payload's values (little-endian u16s, any alignment) as floats in `scratch`. */
export function widenFloats (payload: Uint8Array, scratch: { buf: Float32Array }): Float32Array {
  const n = payload.byteLength >>> 1
  if (scratch.buf.length < n) scratch.buf = new Float32Array(n)
  const floats = scratch.buf.subarray(0, n)
  const out = new Int32Array(floats.buffer, floats.byteOffset, n)
  let src: Uint16Array
  if ((payload.byteOffset & 1) === 0) {
    src = new Uint16Array(payload.buffer, payload.byteOffset, n)
  } else {
    // odd offset: stage the bytes in the upper half of the output (each is read before a write reaches it)
    const staged = new Uint8Array(floats.buffer, floats.byteOffset + n * 2, n * 2)
    staged.set(payload)
    src = new Uint16Array(staged.buffer, staged.byteOffset, n)
  }
  for (let k = 0; k < n; k++) out[k] = src[k] << 16
  return floats
}

/**
 * Where a bf16 round's sender narrows its blocks: `elements` bfloat16s in the staging area of a `simdFloats`
 * array of one block, where each block is copied, then narrowed in SIMD (`FloatKernels.narrowTo`, about 5x the
 * JavaScript loop). The views it hands out stay valid (and unchanged) until the same part of the room is
 * narrowed into again. Without WebAssembly SIMD, the JavaScript loop into a plain array.
 */
export class NarrowRoom {
  readonly length: number
  readonly #block: Float32Array
  readonly #kernels: FloatKernels | null
  readonly #room: Uint16Array | null

  constructor (elements: number, blockElements: number) {
    this.length = elements
    this.#block = simdFloats(blockElements, elements * 2)
    this.#kernels = simdKernelsOf(this.#block)
    this.#room = this.#kernels === null ? new Uint16Array(elements) : null
  }

  /** `count` floats of `from` at `at` (at most a block), narrowed into the room at `roomAt`: their bytes (a view of the room). */
  narrow (from: Float32Array, at: number, count: number, roomAt: number): Uint8Array {
    if (count > this.#block.length) throw new RangeError(`${count} floats, a block of ${this.#block.length}`)
    if (this.#kernels === null) {
      const out = (this.#room as Uint16Array).subarray(roomAt, roomAt + count)
      narrowFloats(from, at, count, out, false)
      return new Uint8Array(out.buffer, out.byteOffset, count * 2)
    }
    this.#block.set(from.subarray(at, at + count))
    return this.#kernels.narrowTo(0, count, roomAt)
  }
}

/** The index of the first non-finite value (NaN, ±Inf) among the first `n` of `values`, or −1. */
export function firstNonFinite (values: Float32Array, n: number): number {
  for (let k = 0; k < n; k++) {
    const v = values[k]
    if (v - v !== 0) return k
  }
  return -1
}

const kernels = new WeakMap<ArrayBufferLike, FloatKernels>()

/**
 * A zeroed float32 array of `length` in a wasm memory of its own, followed by `stagingBytes` for blocks to be
 * added in (`FloatKernels.addFrom`); `simdKernelsOf` gives its kernels. A plain array where no such memory can
 * be had (then its callers take their JavaScript loops).
 */
export function simdFloats (length: number, stagingBytes = 0): Float32Array {
  const stagingAt = Math.ceil(length * 4 / 16) * 16
  const pages = Math.max(1, Math.ceil((stagingAt + stagingBytes) / PAGE_BYTES))
  if (pages > MAX_PAGES) return new Float32Array(length)
  let memory: WasmMemory
  try {
    memory = new (wasm.Memory as unknown as new (d: { initial: number, maximum: number }) => WasmMemory)({ initial: pages, maximum: pages })
  } catch {
    return new Float32Array(length)
  }
  const array = new Float32Array(memory.buffer, 0, length)
  let k: FloatKernels
  try {
    k = new FloatKernels(memory, array, stagingAt, stagingBytes)
  } catch {
    // (a runtime without WebAssembly SIMD)
    return new Float32Array(length)
  }
  kernels.set(memory.buffer, k)
  return array
}

/** The SIMD kernels of an array of `simdFloats`, or null for any other array (a view into one included). */
export function simdKernelsOf (array: Float32Array): FloatKernels | null {
  const k = kernels.get(array.buffer)
  return k !== undefined && k.holds(array) ? k : null
}

/** array[from … to) times f (a float32), in place: in SIMD for an array of `simdFloats`. */
export function scaleFloats (array: Float32Array, from: number, to: number, f: number): void {
  const k = simdKernelsOf(array)
  if (k !== null) k.scale(from, to, f)
  else scaleLoop(array, from, to, f)
}

/** array[from … to) divided by d (a float32), in place: in SIMD for an array of `simdFloats`. */
export function divideFloats (array: Float32Array, from: number, to: number, d: number): void {
  const k = simdKernelsOf(array)
  if (k !== null) k.divide(from, to, d)
  else divideLoop(array, from, to, d)
}
