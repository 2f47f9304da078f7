/**
 * The data path's checked adds and copies, 4 floats at a time in WebAssembly SIMD, on sum buffers that live in a
 * wasm memory of their own (`sumBuffer`). The receiver's loops in JavaScript (exchange.ts `addCheckedFrom`,
 * `copyChecked`) take about 2 ns a float here; these take about 0.3 ns, copying the block in included. At 16 MiB
 * over 3 members that is 12 ms of a member's 50-60 ms of CPU per round, in a profile.
 *
 * A sum buffer's memory holds the buffer, then a staging area of MAX_BLOCK_BYTES, where a received block is
 * copied (the cipher's output lies outside wasm memory) before the add. The memory never grows, so the buffer's
 * view never detaches; a buffer that cannot have a memory of its own (over wasm32's 4 GiB) is a plain array, and
 * the round takes the JavaScript loops.
 *
 * Same results as the JavaScript loops, bit for bit: f32x4.add is IEEE float32 addition, which is what
 * `Math.fround(a + b)` gives for two floats. The check is the loops' too: a lane sums `v − v`, 0 for every
 * finite v, NaN for good once a v is NaN or ±Inf.
 */
import { MAX_BLOCK_BYTES } from '../../protocols/allreduce/index.ts'
import { name, section, uleb, wasm } from '../common/wasm.ts'
import type { WasmMemory } from '../common/wasm.ts'

const PAGE_BYTES = 65536
const MAX_PAGES = 65536

const LOCAL_GET = 0x20
const LOCAL_SET = 0x21
const LOCAL_TEE = 0x22
const I32_CONST = 0x41
const I32_ADD = 0x6a
const I32_LT_U = 0x49
const LOOP = 0x03
const END = 0x0b
const BR_IF = 0x0d
const SIMD = 0xfd
const V128_LOAD = 0x00
const V128_STORE = 0x0b
const F32X4_NE = 0x42
const V128_ANY_TRUE = 0x53
const F32X4_ADD = 0xe4
const F32X4_SUB = 0xe5

/**
 * Two functions on byte addresses, `bytes` a positive multiple of 16; each returns 1 if a value of `src` is not
 * finite, else 0:
 * - `add(dst, src, bytes)`: dst += src;
 * - `check(src, bytes)`.
 */
function moduleBytes (): Uint8Array {
  const fn = (add: boolean): number[] => {
    // params: (dst, src, bytes) or (src, bytes); locals: the byte offset k, then v128 v and acc
    const [DST, SRC, BYTES] = add ? [0, 1, 2] : [-1, 0, 1]
    const K = add ? 3 : 2
    const V = K + 1
    const ACC = K + 2
    const c: number[] = []
    const get = (l: number): void => { c.push(LOCAL_GET, ...uleb(l)) }
    const set = (l: number): void => { c.push(LOCAL_SET, ...uleb(l)) }
    const simd = (op: number, ...imm: number[]): void => { c.push(SIMD, ...uleb(op), ...imm) }
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
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // types: 0 (i32, i32, i32) → i32, 1 (i32, i32) → i32
    ...section(1, [2, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]),
    ...section(3, [2, 0, 1]),
    ...section(7, [2, ...name('add'), 0x00, 0, ...name('check'), 0x00, 1]),
    ...section(10, [2, ...fn(true), ...fn(false)])
  ])
}

let compiled: object | null = null

/** The kernels of one sum buffer: its receiver's checked add and copy, at element offsets of the buffer. */
export class SumKernels {
  readonly #sum: Float32Array
  readonly #bytes: Uint8Array
  readonly #staging: Float32Array
  readonly #stagingBytes: Uint8Array
  readonly #stagingAt: number
  readonly #add: (dst: number, src: number, bytes: number) => number
  readonly #check: (src: number, bytes: number) => number

  constructor (memory: WasmMemory, sum: Float32Array, stagingAt: number) {
    compiled ??= new wasm.Module(moduleBytes())
    const exports = new wasm.Instance(compiled, { env: { memory } }).exports
    this.#add = exports.add as (dst: number, src: number, bytes: number) => number
    this.#check = exports.check as (src: number, bytes: number) => number
    this.#sum = sum
    this.#bytes = new Uint8Array(memory.buffer, 0, sum.byteLength)
    this.#stagingAt = stagingAt
    this.#staging = new Float32Array(memory.buffer, stagingAt, MAX_BLOCK_BYTES / 4)
    this.#stagingBytes = new Uint8Array(memory.buffer, stagingAt, MAX_BLOCK_BYTES)
  }

  /** True for the sum buffer itself (not a view of part of it). */
  holds (array: Float32Array): boolean {
    return array.buffer === this.#sum.buffer && array.byteOffset === 0 && array.length === this.#sum.length
  }

  /**
   * sum[at …] = base[at …] + the block's floats (`payload`: little-endian float32s, any alignment, at most
   * MAX_BLOCK_BYTES); returns the index in the block of its first non-finite value, or −1.
   */
  addFrom (at: number, base: Float32Array, payload: Uint8Array): number {
    const n = payload.byteLength >>> 2
    this.#sum.set(base.subarray(at, at + n), at)
    this.#stagingBytes.set(payload)
    const whole = n & ~3
    let bad = whole > 0 ? this.#add(at * 4, this.#stagingAt, whole * 4) : 0
    const sum = this.#sum
    const staging = this.#staging
    for (let k = whole; k < n; k++) {
      const v = staging[k]
      if (v - v !== 0) bad = 1
      sum[at + k] += v
    }
    return bad === 0 ? -1 : firstNonFinite(staging, n)
  }

  /** sum[at …] = the block's floats; returns the index in the block of its first non-finite value, or −1. */
  copy (at: number, payload: Uint8Array): number {
    const n = payload.byteLength >>> 2
    this.#bytes.set(payload, at * 4)
    const whole = n & ~3
    let bad = whole > 0 ? this.#check(at * 4, whole * 4) : 0
    const sum = this.#sum
    for (let k = whole; k < n; k++) {
      const v = sum[at + k]
      if (v - v !== 0) bad = 1
    }
    return bad === 0 ? -1 : firstNonFinite(sum.subarray(at), n)
  }
}

function firstNonFinite (values: Float32Array, n: number): number {
  for (let k = 0; k < n; k++) {
    const v = values[k]
    if (v - v !== 0) return k
  }
  return -1
}

const kernels = new WeakMap<ArrayBufferLike, SumKernels>()

/**
 * A zeroed float32 array of `length` for the ring to sum into (a round's `into`, reused round after round): in a
 * wasm memory of its own, where the receiver adds and copies with SIMD. A plain array where no such memory can
 * be had (then the round's loops are JavaScript's).
 */
export function sumBuffer (length: number): Float32Array {
  const stagingAt = Math.ceil(length * 4 / 16) * 16
  const pages = Math.ceil((stagingAt + MAX_BLOCK_BYTES) / PAGE_BYTES)
  if (pages > MAX_PAGES) return new Float32Array(length)
  let memory: WasmMemory
  try {
    memory = new (wasm.Memory as unknown as new (d: { initial: number, maximum: number }) => WasmMemory)({ initial: pages, maximum: pages })
  } catch {
    return new Float32Array(length)
  }
  const sum = new Float32Array(memory.buffer, 0, length)
  kernels.set(memory.buffer, new SumKernels(memory, sum, stagingAt))
  return sum
}

/** The SIMD kernels of a sum buffer (`sumBuffer`), or null for any other array (a view into one included). */
export function sumKernelsOf (array: Float32Array): SumKernels | null {
  const k = kernels.get(array.buffer)
  return k !== undefined && k.holds(array) ? k : null
}
