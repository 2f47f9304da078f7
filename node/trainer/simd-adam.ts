/**
 * The Adam step of adam.ts over 4 values at a time, as a small WebAssembly SIMD function working in place in
 * the wasm backend's memory (built once per memory, as simd-filter-grad.ts builds its own). f32x4 arithmetic is
 * IEEE float32, as `Math.fround` of each operation is: the same bits as the scalar loop, in the same order.
 */
import {
  BR_IF, END, F32X4_ADD, F32X4_DIV, F32X4_MUL, F32X4_SPLAT, F32X4_SQRT, I32_ADD, I32_CONST, I32_LT_U,
  I32_SHL, LOCAL_GET, LOCAL_SET, LOOP, SIMD, V128_LOAD, V128_STORE, name, section, uleb, wasm
} from '../common/wasm.ts'
import type { WasmMemory } from '../common/wasm.ts'

/** (mo, vo, wo, mi, vi, wi, gi: byte addresses; vectors: count of 4 floats; β₁, β₂, 1−β₁, 1−β₂, 1−β₁ᵗ, 1−β₂ᵗ, ε, −lr) */
type Fn = (mo: number, vo: number, wo: number, mi: number, vi: number, wi: number, gi: number, vectors: number,
  b1: number, b2: number, c1: number, c2: number, o1: number, o2: number, eps: number, negLr: number) => void

const compiled = new WeakMap<WasmMemory, Fn>()

function moduleBytes (): Uint8Array {
  const [MO, VO, WO, MI, VI, WI, GI, VECTORS] = [0, 1, 2, 3, 4, 5, 6, 7]
  const SCALARS = 8 // 8 f32 params: b1 b2 c1 c2 o1 o2 eps negLr
  const K = 16 // i32 locals: byte offset, end
  const STOP = 17
  const SPLAT = 18 // v128 locals: the 8 splats, then g, m, v
  const [G, M, V] = [26, 27, 28]
  const [B1, B2, C1, C2, O1, O2, EPS, NLR] = Array.from({ length: 8 }, (_, i) => SPLAT + i)
  const c: number[] = []
  const get = (l: number): void => { c.push(LOCAL_GET, ...uleb(l)) }
  const set = (l: number): void => { c.push(LOCAL_SET, ...uleb(l)) }
  const simd = (op: number, ...imm: number[]): void => { c.push(SIMD, ...uleb(op), ...imm) }
  const at = (base: number): void => { get(base); get(K); c.push(I32_ADD) }
  const load = (base: number): void => { at(base); simd(V128_LOAD, 4, 0) }
  for (let s = 0; s < 8; s++) { get(SCALARS + s); simd(F32X4_SPLAT); set(SPLAT + s) }
  c.push(I32_CONST, 0); set(K)
  get(VECTORS); c.push(I32_CONST, 4, I32_SHL); set(STOP)
  c.push(LOOP, 0x40)
  load(GI); set(G)
  // m = m·β₁ + g·(1−β₁)
  load(MI); get(B1); simd(F32X4_MUL); get(G); get(C1); simd(F32X4_MUL); simd(F32X4_ADD); set(M)
  // v = v·β₂ + (g·g)·(1−β₂)
  load(VI); get(B2); simd(F32X4_MUL); get(G); get(G); simd(F32X4_MUL); get(C2); simd(F32X4_MUL); simd(F32X4_ADD); set(V)
  at(MO); get(M); simd(V128_STORE, 4, 0)
  at(VO); get(V); simd(V128_STORE, 4, 0)
  // w = ((m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε))·(−lr) + w
  at(WO)
  get(M); get(O1); simd(F32X4_DIV)
  get(V); get(O2); simd(F32X4_DIV); simd(F32X4_SQRT); get(EPS); simd(F32X4_ADD)
  simd(F32X4_DIV); get(NLR); simd(F32X4_MUL)
  load(WI); simd(F32X4_ADD)
  simd(V128_STORE, 4, 0)
  get(K); c.push(I32_CONST, 16, I32_ADD); set(K)
  get(K); get(STOP); c.push(I32_LT_U, BR_IF, 0)
  c.push(END)
  c.push(END)
  const body = [...uleb(2), ...uleb(2), 0x7f, ...uleb(11), 0x7b, ...c]
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 16, ...new Array<number>(8).fill(0x7f), ...new Array<number>(8).fill(0x7d), 0]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('f'), 0x00, 0]),
    ...section(10, [1, ...uleb(body.length), ...body])
  ])
}

/**
 * The step over the first 4·`vectors` values (at least one vector) of one variable, all given as byte addresses
 * in `memory`; the scalars as adam.ts computes them.
 */
export function simdAdam (memory: WasmMemory, addresses: number[], vectors: number, scalars: number[]): void {
  let f = compiled.get(memory)
  if (f === undefined) {
    f = new wasm.Instance(new wasm.Module(moduleBytes()), { env: { memory } }).exports.f as Fn
    compiled.set(memory, f)
  }
  const [mo, vo, wo, mi, vi, wi, gi] = addresses
  const [b1, b2, c1, c2, o1, o2, eps, negLr] = scalars
  f(mo, vo, wo, mi, vi, wi, gi, vectors, b1, b2, c1, c2, o1, o2, eps, negLr)
}
