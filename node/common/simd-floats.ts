/**
 * Float32 arrays that live in a WebAssembly memory of their own (`simdFloats`), and the loops the step's data
 * path runs over them, 4 floats at a time in wasm SIMD:
 * - the ring receiver's checked add and copy (exchange.ts `addCheckedFrom`, `copyChecked`: about 1.6-2 ns a
 *   float in JavaScript here, 0.4-0.5 ns in SIMD with the block copied in; at 16 MiB over 3 members that was
 *   12 ms of a member's 50-60 ms of CPU per round, in a profile);
 * - the trainer's scaling of the update vector (times the sample count in `flattenUpdate`, divided by the
 *   swarm's in `unflattenUpdate`).
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
  BR_IF, END, F32X4_ADD, F32X4_DIV, F32X4_MUL, F32X4_NE, F32X4_SPLAT, F32X4_SUB, I32_ADD, I32_CONST,
  I32_LT_U, LOCAL_GET, LOCAL_SET, LOCAL_TEE, LOOP, SIMD, V128_ANY_TRUE, V128_LOAD, V128_STORE, name, section,
  uleb, wasm
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
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // types: 0 (i32, i32, i32) → i32, 1 (i32, i32) → i32, 2 (i32, i32, f32) → ()
    ...section(1, [3, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 3, 0x7f, 0x7f, 0x7d, 0]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]),
    ...section(3, [4, 0, 1, 2, 2]),
    ...section(7, [4, ...name('add'), 0x00, 0, ...name('check'), 0x00, 1, ...name('mul'), 0x00, 2, ...name('div'), 0x00, 3]),
    ...section(10, [4, ...fn(true), ...fn(false), ...scale(F32X4_MUL), ...scale(F32X4_DIV)])
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
  readonly #add: (dst: number, src: number, bytes: number) => number
  readonly #check: (src: number, bytes: number) => number
  readonly #mul: (at: number, bytes: number, f: number) => void
  readonly #div: (at: number, bytes: number, f: number) => void

  constructor (memory: WasmMemory, array: Float32Array, stagingAt: number, stagingBytes: number) {
    compiled ??= new wasm.Module(moduleBytes())
    const exports = new wasm.Instance(compiled, { env: { memory } }).exports
    this.#add = exports.add as (dst: number, src: number, bytes: number) => number
    this.#check = exports.check as (src: number, bytes: number) => number
    this.#mul = exports.mul as (at: number, bytes: number, f: number) => void
    this.#div = exports.div as (at: number, bytes: number, f: number) => void
    this.#array = array
    this.#bytes = new Uint8Array(memory.buffer, 0, array.byteLength)
    this.#stagingAt = stagingAt
    this.#staging = new Float32Array(memory.buffer, stagingAt, stagingBytes >>> 2)
    this.#stagingBytes = new Uint8Array(memory.buffer, stagingAt, stagingBytes)
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
    const n = payload.byteLength >>> 2
    this.#array.set(base.subarray(at, at + n), at)
    this.#stagingBytes.set(payload)
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
