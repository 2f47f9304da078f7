/**
 * A conv2d filter gradient in WebAssembly SIMD, generated at run time as a
 * small module that works directly on the wasm backend's memory (imported:
 * no copies in or out), for kernels.ts's `Conv2DBackpropFilter`.
 *
 * Why: on XNNPACK the filter gradient is a product whose inner size is every
 * output position of the batch (the cnn preset's first layer: 73,728), and
 * XNNPACK packs one operand as its weights at each call, about 2.5 ns a value
 * (dy's [73,728, 8] there: longer than the product itself), after im2col has
 * copied the patches. This loop reads x and dy where they lie instead:
 *
 *   dW[u, v·ci + c, q] = Σ over b, i, j of x[b, i·sh + u, j·sw + v, c] · dy[b, i, j, q]
 *
 * For one filter row u, the taps (v, c) of a position are kw·ci consecutive
 * floats of x, so a block of T taps is T consecutive floats: each position
 * loads them (f32.load + splat), loads a slice of V·4 output channels of dy
 * (v128.load) and accumulates T·V f32x4 products in registers.
 * The accumulators are added to dW once per image, so that a float32 sum runs
 * over one image's positions, not the whole batch's.
 *
 * One function per (T, V), generated once and cached per memory. Only valid
 * padding (no x outside the image) and output channels in multiples of 4.
 */
import {
  BR_IF, END, F32X4_ADD, F32X4_MUL, F32X4_SPLAT, F32_LOAD, I32_ADD, I32_CONST, I32_LT_U, I32_MUL, LOCAL_GET,
  LOCAL_SET, LOOP, SIMD, V128_CONST, V128_LOAD, V128_STORE, name, section, sleb, uleb, wasm
} from '../common/wasm.ts'
import type { WasmMemory } from '../common/wasm.ts'

/** f32x4 values a loop may hold in registers (x64 has 16): T·V accumulators, V dy vectors and one splat. */
const REGISTERS = 15

type Fn = (x: number, g: number, out: number, batch: number, oh: number, ow: number,
  xImage: number, xRow: number, xCol: number, gStride: number, outStride: number) => void

const compiled = new WeakMap<WasmMemory, Map<string, Fn>>()

/** The module of one (T, V) function. */
function moduleBytes (taps: number, vectors: number): Uint8Array {
  // params 0-10: x g out batch oh ow xImage xRow xCol gStride outStride (bytes, i32)
  const [X, G, OUT, BATCH, OH, OW, XIMAGE, XROW, XCOL, GSTRIDE, OUTSTRIDE] = Array.from({ length: 11 }, (_, i) => i)
  // i32 locals
  const B = 11; const I = 12; const J = 13; const XP = 14; const XR = 15; const XI = 16; const GP = 17; const ADDR = 18
  const i32Locals = 8
  // v128 locals: accumulators (t·V + k), dy vectors, the splat
  const ACC = 11 + i32Locals
  const GV = ACC + taps * vectors
  const S = GV + vectors
  const v128Locals = taps * vectors + vectors + 1

  const c: number[] = []
  const get = (l: number): void => { c.push(LOCAL_GET, ...uleb(l)) }
  const set = (l: number): void => { c.push(LOCAL_SET, ...uleb(l)) }
  const simd = (op: number, ...imm: number[]): void => { c.push(SIMD, ...uleb(op), ...imm) }
  const addTo = (l: number, k: number): void => { get(l); get(k); c.push(I32_ADD); set(l) }
  const increment = (l: number): void => { get(l); c.push(I32_CONST, ...sleb(1), I32_ADD); set(l) }

  get(G); set(GP)
  get(X); set(XI)
  c.push(I32_CONST, 0); set(B)
  c.push(LOOP, 0x40) // images
  for (let a = 0; a < taps * vectors; a++) { simd(V128_CONST, ...new Array<number>(16).fill(0)); set(ACC + a) }
  get(XI); set(XR)
  c.push(I32_CONST, 0); set(I)
  c.push(LOOP, 0x40) // output rows
  get(XR); set(XP)
  c.push(I32_CONST, 0); set(J)
  c.push(LOOP, 0x40) // output columns
  for (let k = 0; k < vectors; k++) { get(GP); simd(V128_LOAD, 4, ...uleb(16 * k)); set(GV + k) }
  for (let t = 0; t < taps; t++) {
    get(XP); c.push(F32_LOAD, 2, ...uleb(4 * t)); simd(F32X4_SPLAT); set(S)
    for (let k = 0; k < vectors; k++) {
      get(ACC + t * vectors + k); get(S); get(GV + k); simd(F32X4_MUL); simd(F32X4_ADD); set(ACC + t * vectors + k)
    }
  }
  addTo(XP, XCOL)
  addTo(GP, GSTRIDE)
  increment(J)
  get(J); get(OW); c.push(I32_LT_U, BR_IF, 0)
  c.push(END)
  addTo(XR, XROW)
  increment(I)
  get(I); get(OH); c.push(I32_LT_U, BR_IF, 0)
  c.push(END)
  // dW[t, k] += acc[t, k]
  for (let t = 0; t < taps; t++) {
    get(OUT); c.push(I32_CONST, ...sleb(t)); get(OUTSTRIDE); c.push(I32_MUL, I32_ADD); set(ADDR)
    for (let k = 0; k < vectors; k++) {
      get(ADDR); get(ADDR); simd(V128_LOAD, 4, ...uleb(16 * k)); get(ACC + t * vectors + k); simd(F32X4_ADD); simd(V128_STORE, 4, ...uleb(16 * k))
    }
  }
  addTo(XI, XIMAGE)
  increment(B)
  get(B); get(BATCH); c.push(I32_LT_U, BR_IF, 0)
  c.push(END)
  c.push(END) // function

  const body = [...uleb(2), ...uleb(i32Locals), 0x7f, ...uleb(v128Locals), 0x7b, ...c]
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 11, ...new Array<number>(11).fill(0x7f), 0]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('f'), 0x00, 0]),
    ...section(10, [1, ...uleb(body.length), ...body])
  ]
  return new Uint8Array(bytes)
}

function fn (memory: WasmMemory, taps: number, vectors: number): Fn {
  let fns = compiled.get(memory)
  if (fns === undefined) {
    fns = new Map()
    compiled.set(memory, fns)
  }
  const key = `${taps}x${vectors}`
  let f = fns.get(key)
  if (f === undefined) {
    const instance = new wasm.Instance(new wasm.Module(moduleBytes(taps, vectors)), { env: { memory } })
    f = instance.exports.f as Fn
    fns.set(key, f)
  }
  return f
}

/**
 * The memory exported by a wasm module's instance exports (`asm.memory` of
 * an emscripten module) where this file's functions can work on it: a plain
 * (not shared) memory, and WebAssembly SIMD in this runtime; else null.
 */
export function simdMemory (exports: unknown): WasmMemory | null {
  const memory = (exports as { memory?: unknown } | undefined)?.memory
  if (!(memory instanceof wasm.Memory)) return null
  if (typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer) return null
  return simdValid() ? memory : null
}

function simdValid (): boolean {
  try {
    return wasm.validate(moduleBytes(1, 1))
  } catch {
    return false
  }
}

export interface FilterGradShape {
  batch: number
  /** x's rows, columns and channels. */
  h: number
  w: number
  ci: number
  /** dy's rows, columns and channels (co a multiple of 4). */
  oh: number
  ow: number
  co: number
  kh: number
  kw: number
  sh: number
  sw: number
}

/**
 * dW (zeroed by the caller, [kh, kw, ci, co]) += the filter gradient of a
 * valid convolution, x, dy and dW given as byte addresses in `memory`.
 */
export function simdFilterGrad (memory: WasmMemory, x: number, dy: number, dw: number, s: FilterGradShape): void {
  const { batch, h, w, ci, oh, ow, co, kh, kw, sh, sw } = s
  if (batch * oh * ow === 0) return
  const rowTaps = kw * ci
  const outStride = co * 4
  for (let q0 = 0; q0 < co; q0 += 16) {
    const vectors = Math.min(4, (co - q0) / 4)
    const taps = Math.max(1, Math.floor((REGISTERS - vectors - 1) / vectors))
    for (let u = 0; u < kh; u++) {
      for (let t0 = 0; t0 < rowTaps; t0 += taps) {
        const n = Math.min(taps, rowTaps - t0)
        fn(memory, n, vectors)(x + 4 * (u * w * ci + t0), dy + 4 * q0, dw + 4 * ((u * rowTaps + t0) * co + q0),
          batch, oh, ow, 4 * h * w * ci, 4 * sh * w * ci, 4 * sw * ci, outStride, outStride)
      }
    }
  }
}
