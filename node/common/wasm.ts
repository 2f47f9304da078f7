/**
 * Building small WebAssembly modules at run time (the SIMD loops of node/trainer and node/ring): the few
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
