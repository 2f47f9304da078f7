/**
 * Building small WebAssembly modules at run time (the SIMD loops of node/trainer and of simd-floats.ts): the few
 * WebAssembly APIs used (the project's TypeScript libs carry no WebAssembly types) and the binary format's
 * encodings (LEB128 numbers: `uleb` unsigned, `sleb` signed; sections; names).
 */

export interface WasmMemory { readonly buffer: ArrayBufferLike }
export interface WasmApi {
  Memory: abstract new (...args: never[]) => WasmMemory
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
  validate: (bytes: Uint8Array) => boolean
}
export const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

export function uleb (n: number): number[] {
  const out: number[] = []
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

export function sleb (n: number): number[] {
  const out: number[] = []
  for (;;) {
    const byte = n & 0x7f
    n >>= 7
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

export function section (id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body]
}

export function name (s: string): number[] {
  return [...uleb(s.length), ...Array.from(s, c => c.charCodeAt(0))]
}

/** The opcodes the modules use: control, variables, memory and numbers, then SIMD's (after the 0xfd prefix). */
export const LOOP = 0x03
export const END = 0x0b
export const BR_IF = 0x0d
export const LOCAL_GET = 0x20
export const LOCAL_SET = 0x21
export const LOCAL_TEE = 0x22
export const F32_LOAD = 0x2a
export const I32_CONST = 0x41
export const I32_LT_U = 0x49
export const I32_ADD = 0x6a
export const I32_MUL = 0x6c
export const I32_SHL = 0x74
export const SIMD = 0xfd
export const V128_LOAD = 0x00
export const V128_STORE = 0x0b
export const V128_CONST = 0x0c
export const F32X4_SPLAT = 0x13
export const F32X4_NE = 0x42
export const V128_ANY_TRUE = 0x53
export const I32X4_SPLAT = 0x11
export const I32X4_EQ = 0x37
export const V128_AND = 0x4e
export const V128_ANDNOT = 0x4f
export const I16X8_NARROW_I32X4_U = 0x86
export const I32X4_EXTEND_LOW_I16X8_U = 0xa9
export const I32X4_EXTEND_HIGH_I16X8_U = 0xaa
export const I32X4_SHL = 0xab
export const I32X4_SHR_U = 0xad
export const I32X4_ADD = 0xae
export const F32X4_SQRT = 0xe3
export const F32X4_ADD = 0xe4
export const F32X4_SUB = 0xe5
export const F32X4_MUL = 0xe6
export const F32X4_DIV = 0xe7
