/**
 * Faster kernels for TensorFlow.js's WebAssembly backend, so that stock
 * autodiff (`tf.variableGrads`, `tf.grads`, `model.fit`) of any Layers model
 * trains at the speed of the hand-written backward pass in model.ts.
 *
 * What wasm gets wrong, and what replaces it (each kernel keeps the stock
 * kernel's contract: same inputs, attributes and output):
 *
 * - `BatchMatMul` with `transposeA`/`transposeB` runs as a naive loop, 12-50x
 *   slower than the plain (XNNPACK) product; every dense layer's backward pass
 *   uses it. Replaced by explicit transposes (wasm's `Transpose` kernel) and the
 *   plain product, choosing between `op(a)·op(b)` and `(op(b)ᵀ·op(a)ᵀ)ᵀ`
 *   whichever copies fewer elements: for `dy·Wᵀ` that transposes the two
 *   batch-sized operands rather than a large kernel. `_FusedMatMul` with
 *   transposes gets the same (operands only).
 * - Batched `BatchMatMul` (batch > 1, as attention's q·kᵀ and scores·v) runs
 *   as a naive loop too: XNNPACK serves only one pair of matrices. Replaced
 *   by one XNNPACK product per pair, through views of the operands
 *   registered with the wasm side (no copies), or by one tall product where b
 *   is shared (`[batch, m, k]·[k, n]`). `_FusedMatMul` with a batched a and a
 *   shared b runs as that tall product, fused; with batched b, where the stock
 *   kernel also adds the bias wrongly, as product, bias and activation.
 * - `Conv2DBackpropFilter` is missing (autodiff of conv2d throws). With valid
 *   padding and output channels in fours: a WebAssembly SIMD loop over x and
 *   dy where they lie (simd-filter-grad.ts), 3-4x faster than XNNPACK, which
 *   packs the batch-long dy as its weights at every call. Else im2col and one
 *   XNNPACK product (patchesᵀ·dy), in blocks that bound the extra memory; for
 *   stride 1 with patch rows copied as runs of the input over its full width.
 * - `Sum` over leading axes (bias gradients) transposes first: a loop over
 *   the heap instead, 2-6x faster (a product with a row of ones packs the
 *   whole input as XNNPACK weights, slower still).
 * - `Conv2DBackpropInput` is a naive loop (7x a forward conv). Written as a
 *   valid forward convolution of `dy`, spread out by the stride and padded, with
 *   the kernel rotated by 180 degrees and its channel axes swapped.
 * - `MaxPoolGrad` is slow (20x the forward pool) and sends a window's gradient
 *   to the last maximum; replaced by a loop over the wasm heap that picks the
 *   first maximum in row-major order, as the cpu and native kernels do.
 * - `DepthwiseConv2dNativeBackpropInput` is missing: a forward depthwise
 *   convolution of the spread, padded dy with the kernel rotated (10x and
 *   more faster than a loop); `DepthwiseConv2dNativeBackpropFilter` and
 *   `UnsortedSegmentSum` (the gradient of `gather`, so of embeddings) are
 *   missing too: loops over the wasm heap.
 * - `Tile`, `GatherV2` compute an index per element: block and row copies;
 *   `SplitV` runs a Slice kernel per output: row copies into all of them;
 *   `Identity` and `Cast` to the same dtype copy their input: they share the
 *   buffer, as cpu's identity does.
 *
 * - Gradients (any backend): `tile`'s gradient slices and adds once per
 *   repetition (layerNormalization of a [64, 64, 32] sequence: 4,096 of each,
 *   seconds a step); replaced by one reshape and sum.
 *
 * Usage: load the wasm backend (`import '@tensorflow/tfjs-backend-wasm'`),
 * then call `registerFastWasmKernels()` once (it registers the gradients
 * too); backend.ts does it when it selects wasm, and registers the gradients
 * alone for the other backends. `unregisterFastWasmKernels()` puts the stock
 * kernels and gradients back (for benchmarks and tests).
 */
import * as tf from '@tensorflow/tfjs'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import { simdFilterGrad, simdMemory } from './simd-filter-grad.ts'
import type { WasmMemory } from '../common/wasm.ts'

const BACKEND = 'wasm'

type Info = tf.TensorInfo
type Attrs = Record<string, unknown>
interface Args { inputs: Record<string, Info | undefined>, backend: BackendWasm, attrs: Attrs }
type Kernel = (args: Args) => Info

/** The stock wasm kernels ours replaced, to call and to restore; null while ours are not registered. */
let replaced: Map<string, tf.KernelConfig | undefined> | null = null
/** Stock wasm kernel functions, looked up once when ours are registered. */
const stockFuncs = new Map<string, Kernel>()

function stock (name: string): Kernel {
  const f = stockFuncs.get(name)
  if (f === undefined) throw new Error(`wasm kernel ${name} is not registered`)
  return f
}

function call (name: string, backend: BackendWasm, inputs: Record<string, Info>, attrs: Attrs = {}): Info {
  return stock(name)({ inputs, backend, attrs })
}

function free (backend: BackendWasm, ...infos: Info[]): void {
  for (const info of infos) backend.disposeData(info.dataId)
}

function size (shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

/** A view of a tensor's data on the wasm heap; take it after the last allocation (the heap may grow and move). */
function heap (backend: BackendWasm, info: Info): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array
}

/**
 * A float32 tensor's values: on the wasm backend a view of its memory on the heap (no copy: a model-sized copy per
 * step is external memory that drives V8's collections), elsewhere `dataSync()`. Read it before anything allocates
 * on the backend (the heap may grow and move).
 */
export function floatValues (t: tf.Tensor): Float32Array {
  if (t.dtype === 'float32' && tf.getBackend() === 'wasm') return heap(tf.backend() as BackendWasm, t)
  return t.dataSync() as Float32Array
}

/** Where computeFloats' tensors are on the wasm heap, for code that works on it directly (byte addresses). */
export interface HeapPlaces {
  memory: WasmMemory
  outs: number[]
  ins: number[]
}

/**
 * New float32 tensors of `shapes`, written in place by `compute` from the values of `inputs` (float32): on the
 * wasm backend the outputs are allocated first and every view is taken after (the heap may grow and move), so
 * nothing is copied in or out, and `places` says where they are when the heap can be worked on directly
 * (a plain memory, SIMD available); elsewhere from arrays, `places` null.
 */
export function computeFloats (shapes: number[][], inputs: tf.Tensor[], compute: (outs: Float32Array[], ins: Float32Array[], places: HeapPlaces | null) => void): tf.Tensor[] {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as BackendWasm
    const infos = shapes.map(shape => backend.makeOutput(shape, 'float32'))
    const memory = wasmMemory(backend)
    const places = memory === null ? null : { memory, outs: infos.map(i => place(backend, i).offset), ins: inputs.map(t => place(backend, t).offset) }
    compute(infos.map(info => heap(backend, info)), inputs.map(t => heap(backend, t)), places)
    return infos.map(info => tf.engine().makeTensorFromTensorInfo(info))
  }
  const outs = shapes.map(shape => new Float32Array(size(shape)))
  compute(outs, inputs.map(t => t.dataSync() as Float32Array), null)
  return outs.map((values, i) => tf.tensor(values, shapes[i]))
}

/** The whole wasm heap as floats, for copies by absolute index (take it after the last allocation). */
function floats (backend: BackendWasm): Float32Array {
  const buffer = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer
  return new Float32Array(buffer, 0, buffer.byteLength >> 2)
}

/** Where a float32 tensor starts in floats(backend). */
function index (backend: BackendWasm, info: Info): number {
  return place(backend, info).offset >> 2
}

/** A new float32 tensor of zeros on the wasm heap. */
function zeros (backend: BackendWasm, shape: number[]): Info {
  const out = backend.makeOutput(shape, 'float32')
  heap(backend, out).fill(0)
  return out
}

/** `sum + part` as a new tensor (both freed), or `part` itself for the first one. */
function accumulate (backend: BackendWasm, sum: Info | null, part: Info): Info {
  if (sum === null) return part
  const next = call('Add', backend, { a: sum, b: part })
  free(backend, sum, part)
  return next
}

function swapLast (backend: BackendWasm, x: Info): Info {
  const r = x.shape.length
  const perm = Array.from({ length: r }, (_, i) => i < r - 2 ? i : 2 * r - 3 - i)
  return call('Transpose', backend, { x }, { perm })
}

function channelsLast (kernel: string, dataFormat: unknown): 'channelsLast' {
  const format = tf.backend_util.convertConv2DDataFormat((dataFormat ?? 'NHWC') as 'NHWC' | 'NCHW')
  if (format !== 'channelsLast') throw new Error(`wasm ${kernel} supports only dataFormat NHWC, not ${String(dataFormat)}`)
  return format
}

// ---------------------------------------------------------------- matMul

type WasmMatMul = (aId: number, aShape: Uint8Array, aRank: number, bId: number, bShape: Uint8Array, bRank: number,
  transposeA: boolean, transposeB: boolean, outId: number) => void

/** wasm's own BatchMatMul entry point, per backend instance (it is bound to one wasm module). */
const wasmMatMuls = new WeakMap<BackendWasm, WasmMatMul>()

function wasmMatMul (backend: BackendWasm): WasmMatMul {
  let f = wasmMatMuls.get(backend)
  if (f === undefined) {
    const module = backend.wasm as unknown as { cwrap: (name: string, ret: null, args: string[]) => WasmMatMul }
    f = module.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number'])
    wasmMatMuls.set(backend, f)
  }
  return f
}

function shapeBytes (shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer)
}

/** The wasm-side id and heap offset (bytes) of a tensor. */
function place (backend: BackendWasm, info: Info): { id: number, offset: number } {
  const data = backend.dataIdMap.get(info.dataId) as unknown as { id: number, memoryOffset: number }
  return { id: data.id, offset: data.memoryOffset }
}

/**
 * Offsets (in matrices) into a's and b's batch of each output matrix, with
 * numpy broadcasting of the batch dimensions.
 */
function batchIndex (aBatch: number[], bBatch: number[], outBatch: number[]): { a: Int32Array, b: Int32Array } {
  const n = size(outBatch)
  const a = new Int32Array(n)
  const b = new Int32Array(n)
  const r = outBatch.length
  const index = new Array<number>(r).fill(0)
  const flat = (shape: number[]): number => {
    let at = 0
    const off = r - shape.length
    for (let d = 0; d < shape.length; d++) at = at * shape[d] + (shape[d] === 1 ? 0 : index[d + off])
    return at
  }
  for (let i = 0; i < n; i++) {
    a[i] = flat(aBatch)
    b[i] = flat(bBatch)
    for (let d = r - 1; d >= 0; d--) {
      if (++index[d] < outBatch[d]) break
      index[d] = 0
    }
  }
  return { a, b }
}

/**
 * C = a·b (no transposes), batched, on XNNPACK's fully-connected operator:
 * wasm's own kernel uses it only for a single matrix pair and runs any batch
 * as a naive loop. A shared (batch-1) b makes a's batch one tall matrix; else
 * each pair of matrices runs on its own, through views registered with the
 * wasm side at offsets into the operands (no copies).
 */
function product (backend: BackendWasm, a: Info, b: Info): Info {
  const ra = a.shape.length
  const rb = b.shape.length
  const [m, k] = a.shape.slice(ra - 2)
  const n = b.shape[rb - 1]
  const aBatch = a.shape.slice(0, -2)
  const bBatch = b.shape.slice(0, -2)
  const outBatch = tf.backend_util.assertAndGetBroadcastShape(aBatch, bBatch)
  const batchA = size(aBatch)
  const batchB = size(bBatch)
  const batch = size(outBatch)
  if (m * k * n === 0 || b.shape[rb - 2] !== k) return call('BatchMatMul', backend, { a, b }, { transposeA: false, transposeB: false })
  const run = wasmMatMul(backend)
  const out = backend.makeOutput([...outBatch, m, n], 'float32')
  const bShape = shapeBytes([1, k, n])
  if (batchB === 1 && batchA === batch) {
    run(place(backend, a).id, shapeBytes([1, batchA * m, k]), 3, place(backend, b).id, bShape, 3, false, false, place(backend, out).id)
    return out
  }
  const index = batchIndex(aBatch, bBatch, outBatch)
  const pa = place(backend, a)
  const pb = place(backend, b)
  const po = place(backend, out)
  const aShape = shapeBytes([1, m, k])
  const wasm = backend.wasm
  const view = (offset: number, elements: number): number => {
    const id = (backend as unknown as { dataIdNextNumber: number }).dataIdNextNumber++
    wasm.tfjs.registerTensor(id, elements, offset)
    return id
  }
  for (let i = 0; i < batch; i++) {
    const va = batchA === 1 ? pa.id : view(pa.offset + 4 * index.a[i] * m * k, m * k)
    // XNNPACK packs b into its operator, cached under b's id until that id is disposed
    const vb = batchB === 1 ? pb.id : view(pb.offset + 4 * index.b[i] * k * n, k * n)
    const vo = view(po.offset + 4 * i * m * n, m * n)
    run(va, aShape, 3, vb, bShape, 3, false, false, vo)
    if (va !== pa.id) wasm.tfjs.disposeData(va)
    if (vb !== pb.id) wasm.tfjs.disposeData(vb)
    wasm.tfjs.disposeData(vo)
  }
  return out
}

/** C = op(a)·op(b), batched, with transposes made explicit. */
function batchMatMul (args: Args): Info {
  const { backend, attrs } = args
  const a = args.inputs.a as Info
  const b = args.inputs.b as Info
  const tA = attrs.transposeA === true
  const tB = attrs.transposeB === true
  const ra = a.shape.length
  const rb = b.shape.length
  const innerA = a.shape[tA ? ra - 2 : ra - 1]
  const innerB = b.shape[tB ? rb - 1 : rb - 2]
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || innerA !== innerB) return stock('BatchMatMul')(args)
  if (!tA && !tB) return product(backend, a, b)
  const m = a.shape[tA ? ra - 1 : ra - 2]
  const n = b.shape[tB ? rb - 2 : rb - 1]
  const batch = Math.max(size(a.shape.slice(0, -2)), size(b.shape.slice(0, -2)))
  const sa = size(a.shape)
  const sb = size(b.shape)
  const plain = (x: Info, y: Info): Info => product(backend, x, y)
  // elements copied: transposing the flagged operands, or the others and the product
  const direct = (tA ? sa : 0) + (tB ? sb : 0)
  const flipped = batch * m * n + (tA ? 0 : sa) + (tB ? 0 : sb)
  if (direct <= flipped) {
    const x = tA ? swapLast(backend, a) : a
    const y = tB ? swapLast(backend, b) : b
    const out = plain(x, y)
    if (tA) free(backend, x)
    if (tB) free(backend, y)
    return out
  }
  // Cᵀ = op(b)ᵀ·op(a)ᵀ
  const x = tB ? b : swapLast(backend, b)
  const y = tA ? a : swapLast(backend, a)
  const ct = plain(x, y)
  if (!tB) free(backend, x)
  if (!tA) free(backend, y)
  const out = swapLast(backend, ct)
  free(backend, ct)
  return out
}

/** Stock wasm kernels for the activations `_FusedMatMul` can fuse. */
const ACTIVATIONS: Record<string, string | undefined> = { relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid', leakyrelu: 'LeakyRelu', prelu: 'Prelu' }

/**
 * The fused product (bias, activation) with transposed operands made explicit.
 * With batched operands and a bias, the stock kernel adds the bias wrongly
 * (off by up to the bias itself); there the product, the bias and the
 * activation run as separate kernels.
 */
function fusedMatMul (args: Args): Info {
  const { backend, attrs } = args
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, Info>
  const tA = attrs.transposeA === true
  const tB = attrs.transposeB === true
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock('_FusedMatMul')(args)
  const batchA = size(a.shape.slice(0, -2))
  const batchB = size(b.shape.slice(0, -2))
  if (batchA > 1 && batchB === 1 && !tA && a.shape.length === 3 && b.shape.length === 3) {
    // a's batch as one tall matrix against the shared b: the stock kernel's fused path, on one matrix pair
    const [m, k] = a.shape.slice(-2)
    const outShape = [...tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), m, b.shape[b.shape.length - (tB ? 2 : 1)]]
    const tall = call('Reshape', backend, { x: a }, { shape: [1, batchA * m, k] })
    const y = tB ? swapLast(backend, b) : b
    const out = stock('_FusedMatMul')({ inputs: { ...args.inputs, a: tall, b: y }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } })
    free(backend, tall)
    if (tB) free(backend, y)
    out.shape = outShape
    return out
  }
  if (batchA > 1 || batchB > 1) {
    const activation = String(attrs.activation ?? 'linear')
    const kernel = ACTIVATIONS[activation]
    if (kernel === undefined && activation !== 'linear') return stock('_FusedMatMul')(args) // the stock kernel names what it does not support
    const c = batchMatMul({ inputs: { a, b }, backend, attrs: { transposeA: tA, transposeB: tB } })
    if (bias === undefined && kernel === undefined) return c
    let biased = c
    if (bias !== undefined) {
      biased = call('Add', backend, { a: c, b: bias })
      free(backend, c)
    }
    if (kernel === undefined) return biased
    const out = kernel === 'Prelu'
      ? call(kernel, backend, { x: biased, alpha: preluActivationWeights })
      : call(kernel, backend, { x: biased }, { alpha: attrs.leakyreluAlpha })
    free(backend, biased)
    return out
  }
  if (!tA && !tB) return stock('_FusedMatMul')(args)
  const x = tA ? swapLast(backend, a) : a
  const y = tB ? swapLast(backend, b) : b
  const out = stock('_FusedMatMul')({ inputs: { ...args.inputs, a: x, b: y }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } })
  if (tA) free(backend, x)
  if (tB) free(backend, y)
  return out
}

// ---------------------------------------------------------------- conv2d

/** Elements of one im2col block (16 MiB of floats): bounds the extra memory of a filter gradient. */
let im2colBlock = 4 << 20

/** Sets the im2col block size (elements) and returns the previous one: for tests of the blocked path. */
export function setIm2colBlock (elements: number): number {
  const previous = im2colBlock
  im2colBlock = elements
  return previous
}

/**
 * dW as [kh·kw·ci, n]·[n, co] with n = b·oh·ow: the patches of x, laid out
 * transposed (one row per filter tap and input channel, so that a row is
 * filled by runs along the output width), times dy, on XNNPACK; in blocks of
 * whole images of at most im2colBlock patch elements, summed.
 */
function filterGradIm2col (backend: BackendWasm, x: Info, dy: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: batch, inHeight: h, inWidth: w, inChannels: ci, outChannels: co, filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info
  const { top, left } = info.padInfo
  const k = kh * kw * ci
  const pixels = oh * ow
  const perBlock = Math.max(1, Math.floor(im2colBlock / (k * pixels)))
  let sum: Info | null = null
  for (let b0 = 0; b0 < batch; b0 += perBlock) {
    const nb = Math.min(perBlock, batch - b0)
    const n = nb * pixels
    const cols = backend.makeOutput([k, n], 'float32')
    let g: Info
    if (nb === batch) {
      g = call('Reshape', backend, { x: dy }, { shape: [n, co] })
    } else {
      g = backend.makeOutput([n, co], 'float32')
      heap(backend, g).set(heap(backend, dy).subarray(b0 * pixels * co, (b0 + nb) * pixels * co))
    }
    const xs = heap(backend, x)
    const out = heap(backend, cols)
    let p = 0
    for (let u = 0; u < kh; u++) {
      for (let v = 0; v < kw; v++) {
        // the output columns whose input column is inside x: j in [j0, j1)
        const j0 = Math.min(ow, Math.max(0, Math.ceil((left - v) / sw)))
        const j1 = Math.max(j0, Math.min(ow, Math.floor((w - 1 + left - v) / sw) + 1))
        const step = sw * ci
        for (let c = 0; c < ci; c++) {
          for (let b = b0; b < b0 + nb; b++) {
            for (let i = 0; i < oh; i++) {
              const r = i * sh + u - top
              if (r < 0 || r >= h) {
                out.fill(0, p, p + ow)
                p += ow
                continue
              }
              const base = (b * h + r) * w * ci + c + (v - left) * ci
              for (let j = 0; j < j0; j++) out[p + j] = 0
              // a plain loop: the runs are short (a subarray per run costs more than its copy)
              for (let j = j0, q = base + j0 * step; j < j1; j++, q += step) out[p + j] = xs[q]
              for (let j = j1; j < ow; j++) out[p + j] = 0
              p += ow
            }
          }
        }
      }
    }
    const part = product(backend, cols, g) // [k, co]
    free(backend, cols, g)
    sum = accumulate(backend, sum, part)
  }
  const result = sum as Info
  const out = call('Reshape', backend, { x: result }, { shape: [kh, kw, ci, co] })
  free(backend, result)
  return out
}

/**
 * dW for stride 1, as filterGradIm2col but with every patch row a copy of
 * one run of the input: positions run over the full padded width wp (not
 * just the ow output columns), so that row (u, v, c) of image b is the
 * contiguous run of input plane (c, b) that starts at u·wp + v. dy is
 * widened to [b, oh, wp, co] with zeros in the extra columns, which cancel
 * what those rows read there (the next input row's first values; so a
 * non-finite input value can reach taps that do not see it). Input planes:
 * x itself where it has one channel and no padding, else x transposed to
 * [ci, b, hp, wp] and padded. The product's inner size grows by wp / ow
 * (1.17 for a 5x5 filter over 28x28), the copies are runs instead of
 * element by element: 2x faster on the cnn preset's first layer.
 */
function filterGradRows (backend: BackendWasm, x: Info, dy: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: batch, inHeight: h, inWidth: w, inChannels: ci, outChannels: co, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow } = info
  const { top, left, bottom, right } = info.padInfo
  const hp = h + top + bottom
  const wp = w + left + right
  const k = kh * kw * ci
  const run = oh * wp // positions of one image
  const plane = hp * wp
  let planes: Info = x
  if (ci > 1 || hp !== h || wp !== w) {
    const t = ci > 1 ? call('Transpose', backend, { x }, { perm: [3, 0, 1, 2] }) : x // [ci, b, h, w]
    if (hp === h && wp === w) {
      planes = t
    } else {
      planes = zeros(backend, [ci, batch, hp, wp])
      const src = heap(backend, t)
      const dst = heap(backend, planes)
      for (let p = 0; p < ci * batch; p++) {
        for (let r = 0; r < h; r++) dst.set(src.subarray((p * h + r) * w, (p * h + r + 1) * w), (p * hp + r + top) * wp + left)
      }
      if (t !== x) free(backend, t)
    }
  }
  const total = ci * batch * plane
  const perBlock = Math.max(1, Math.floor(im2colBlock / (k * run)))
  let sum: Info | null = null
  for (let b0 = 0; b0 < batch; b0 += perBlock) {
    const nb = Math.min(perBlock, batch - b0)
    const n = nb * run
    const cols = backend.makeOutput([k, n], 'float32')
    const g = backend.makeOutput([n, co], 'float32')
    // copies within the whole heap by absolute index (copyWithin): a subarray per run would cost more than its copy
    const mem = floats(backend)
    // dy widened: each output row's ow·co values, then zeros
    const width = ow * co
    const dy0 = index(backend, dy)
    const g0 = index(backend, g)
    for (let b = 0; b < nb; b++) {
      for (let i = 0; i < oh; i++) {
        const from = dy0 + ((b0 + b) * oh + i) * width
        const to = g0 + (b * oh + i) * wp * co
        mem.copyWithin(to, from, from + width)
        mem.fill(0, to + width, to + wp * co)
      }
    }
    const src = index(backend, planes)
    let p = index(backend, cols)
    for (let u = 0; u < kh; u++) {
      for (let v = 0; v < kw; v++) {
        for (let c = 0; c < ci; c++) {
          for (let b = b0; b < b0 + nb; b++, p += run) {
            const from = (c * batch + b) * plane + u * wp + v
            const end = Math.min(total, from + run) // the last plane's last row reads up to kw − 1 past the end
            mem.copyWithin(p, src + from, src + end)
            if (end < from + run) mem.fill(0, p + end - from, p + run)
          }
        }
      }
    }
    const part = product(backend, cols, g) // [k, co]
    free(backend, cols, g)
    sum = accumulate(backend, sum, part)
  }
  if (planes !== x) free(backend, planes)
  const result = sum as Info
  const out = call('Reshape', backend, { x: result }, { shape: [kh, kw, ci, co] })
  free(backend, result)
  return out
}

/** The wasm backend's memory, where simd-filter-grad.ts can work on it (a plain memory, SIMD available); else null. */
const memories = new WeakMap<BackendWasm, WasmMemory | null>()

function wasmMemory (backend: BackendWasm): WasmMemory | null {
  let memory = memories.get(backend)
  if (memory === undefined) {
    memory = simdMemory((backend.wasm as unknown as { asm?: unknown }).asm)
    memories.set(backend, memory)
  }
  return memory
}

/** dW[kh, kw, ci, co] = Σ over b, oh, ow of xpad[b, oh·sh + kh, ow·sw + kw, ci] · dy[b, oh, ow, co], by im2col. */
function conv2DBackpropFilter (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const dy = args.inputs.dy as Info
  const filterShape = attrs.filterShape as [number, number, number, number]
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, attrs.strides as [number, number],
    1, attrs.pad as 'valid', attrs.dimRoundingMode as 'floor' | undefined, false, channelsLast('Conv2DBackpropFilter', attrs.dataFormat))
  const { strideHeight: sh, strideWidth: sw, padInfo: pad } = info
  const memory = wasmMemory(backend)
  if (memory !== null && x.dtype === 'float32' && dy.dtype === 'float32' && pad.top === 0 && pad.left === 0 && pad.bottom === 0 && pad.right === 0 && info.outChannels % 4 === 0 &&
    info.dilationHeight === 1 && info.dilationWidth === 1) {
    const out = zeros(backend, filterShape)
    simdFilterGrad(memory, place(backend, x).offset, place(backend, dy).offset, place(backend, out).offset, {
      batch: info.batchSize, h: info.inHeight, w: info.inWidth, ci: info.inChannels, oh: info.outHeight, ow: info.outWidth, co: info.outChannels,
      kh: info.filterHeight, kw: info.filterWidth, sh, sw
    })
    return out
  }
  const rows = sh === 1 && sw === 1 && info.outHeight === info.inHeight + pad.top + pad.bottom - info.filterHeight + 1 &&
    info.outWidth === info.inWidth + pad.left + pad.right - info.filterWidth + 1
  return (rows ? filterGradRows : filterGradIm2col)(backend, x, dy, info)
}

/**
 * dy [batch, oh, ow, c] spread out by the stride (zeros between rows and
 * columns) into a zero tensor of `shape` [batch, hp, wp, c], its first row
 * and column at (top, left); rows and columns outside are dropped.
 */
function spreadOut (backend: BackendWasm, dy: Info, shape: number[], top: number, left: number, sh: number, sw: number): Info {
  const [batch, oh, ow, c] = dy.shape
  const [, hp, wp] = shape
  const spread = zeros(backend, shape)
  const src = heap(backend, dy)
  const dst = heap(backend, spread)
  if (sw === 1 && left >= 0 && left + ow <= wp) {
    // rows stay contiguous: one copy per row, by absolute index within the heap
    const mem = floats(backend)
    const from = index(backend, dy)
    const to = index(backend, spread)
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < oh; i++) {
        const p = top + i * sh
        if (p < 0 || p >= hp) continue
        const s = from + (b * oh + i) * ow * c
        mem.copyWithin(to + ((b * hp + p) * wp + left) * c, s, s + ow * c)
      }
    }
    return spread
  }
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < oh; i++) {
      const p = top + i * sh
      if (p < 0 || p >= hp) continue
      for (let j = 0; j < ow; j++) {
        const q = left + j * sw
        if (q < 0 || q >= wp) continue
        const s = ((b * oh + i) * ow + j) * c
        dst.set(src.subarray(s, s + c), ((b * hp + p) * wp + q) * c)
      }
    }
  }
  return spread
}

/**
 * dx as a valid, stride-1 forward convolution of dy spread out by the stride
 * (zeros between rows and columns) and padded by (kernel − 1 − pad), with the
 * kernel rotated by 180 degrees and its channel axes swapped.
 */
function conv2DBackpropInput (args: Args): Info {
  const { backend, attrs } = args
  const dy = args.inputs.dy as Info
  const filter = args.inputs.filter as Info
  const inputShape = attrs.inputShape as [number, number, number, number]
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], attrs.strides as [number, number],
    1, attrs.pad as 'valid', attrs.dimRoundingMode as 'floor' | undefined, false, channelsLast('Conv2DBackpropInput', attrs.dataFormat))
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow, inHeight: h, inWidth: w } = info
  const [batch, , , ci] = inputShape
  const co = filter.shape[3]
  const hp = h + kh - 1
  const wp = w + kw - 1
  const top = kh - 1 - info.padInfo.top
  const left = kw - 1 - info.padInfo.left
  const spread = spreadOut(backend, dy, [batch, hp, wp, co], top, left, sh, sw)
  const rotated = backend.makeOutput([kh, kw, co, ci], 'float32')
  const wt = heap(backend, filter)
  const rot = heap(backend, rotated)
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const from = ((kh - 1 - i) * kw + (kw - 1 - j)) * ci * co
      const to = (i * kw + j) * co * ci
      for (let c = 0; c < ci; c++) {
        for (let o = 0; o < co; o++) rot[to + o * ci + c] = wt[from + c * co + o]
      }
    }
  }
  const dx = call('Conv2D', backend, { x: spread, filter: rotated }, { strides: [1, 1], dilations: [1, 1], pad: 'valid', dataFormat: 'NHWC', dimRoundingMode: undefined })
  free(backend, spread, rotated)
  return dx
}

// ---------------------------------------------------------------- depthwise conv2d

function depthwiseInfo (xShape: number[], filterShape: number[], attrs: Attrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number],
    attrs.strides as [number, number], (attrs.dilations ?? 1) as [number, number], attrs.pad as 'valid', attrs.dimRoundingMode as 'floor' | undefined, true)
}

function undilated (info: tf.backend_util.Conv2DInfo): boolean {
  return info.dilationHeight === 1 && info.dilationWidth === 1
}

/**
 * dx as a valid, stride-1 forward depthwise convolution of dy spread out by
 * the stride and padded, with the kernel rotated by 180 degrees (each of the
 * c·m channels its own), then a sum over the multiplier.
 */
function depthwiseBackpropInput (args: Args): Info {
  const { backend, attrs } = args
  const dy = args.inputs.dy as Info
  const filter = args.inputs.filter as Info
  const inputShape = attrs.inputShape as number[]
  const info = depthwiseInfo(inputShape, filter.shape, attrs)
  if (!undilated(info)) return depthwiseBackpropInputLoop(args)
  const { batchSize: batch, inHeight: h, inWidth: w, inChannels: c, filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info
  const m = filter.shape[3]
  const cm = c * m
  const spread = spreadOut(backend, dy, [batch, h + kh - 1, w + kw - 1, cm], kh - 1 - info.padInfo.top, kw - 1 - info.padInfo.left, sh, sw)
  const rotated = backend.makeOutput([kh, kw, cm, 1], 'float32')
  const wt = heap(backend, filter)
  const rot = heap(backend, rotated)
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const from = ((kh - 1 - i) * kw + (kw - 1 - j)) * cm
      rot.set(wt.subarray(from, from + cm), (i * kw + j) * cm)
    }
  }
  const dx = call('DepthwiseConv2dNative', backend, { x: spread, filter: rotated }, { strides: [1, 1], dilations: [1, 1], pad: 'valid', dimRoundingMode: undefined }) // [b, H, W, c·m]
  free(backend, spread, rotated)
  if (m === 1) return dx
  const split = call('Reshape', backend, { x: dx }, { shape: [batch, h, w, c, m] })
  const out = call('Sum', backend, { x: split }, { axis: [4], keepDims: false })
  free(backend, dx, split)
  return out
}

/**
 * dW[kh, kw, c, q] = Σ over b, oh, ow of x[b, oh·sh + kh·dh − top, ow·sw + kw·dw − left, c] · dy[b, oh, ow, c·m + q],
 * a loop over the wasm heap (as one depthwise convolution with dy as a
 * dilated filter, or per tap as products, XNNPACK was no faster).
 */
function depthwiseBackpropFilter (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const dy = args.inputs.dy as Info
  const filterShape = attrs.filterShape as number[]
  const info = depthwiseInfo(x.shape, filterShape, attrs)
  const { batchSize, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, filterHeight: kh, filterWidth: kw } = info
  const m = filterShape[3]
  const acc = new Float64Array(size(filterShape))
  const xs = heap(backend, x)
  const g = heap(backend, dy)
  for (let b = 0; b < batchSize; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const gOff = ((b * oh + i) * ow + j) * ci * m
        for (let u = 0; u < kh; u++) {
          const r = i * info.strideHeight + u * info.dilationHeight - info.padInfo.top
          if (r < 0 || r >= h) continue
          for (let v = 0; v < kw; v++) {
            const c0 = j * info.strideWidth + v * info.dilationWidth - info.padInfo.left
            if (c0 < 0 || c0 >= w) continue
            const xOff = ((b * h + r) * w + c0) * ci
            const wOff = (u * kw + v) * ci * m
            for (let c = 0; c < ci; c++) {
              const xv = xs[xOff + c]
              for (let q = 0; q < m; q++) acc[wOff + c * m + q] += xv * g[gOff + c * m + q]
            }
          }
        }
      }
    }
  }
  const out = backend.makeOutput(filterShape, 'float32')
  heap(backend, out).set(acc)
  return out
}

/** dx[b, r, c0, c] = Σ over kh, kw, q of dy[b, oh, ow, c·m + q] · W[kh, kw, c, q] where r = oh·sh + kh·dh − top. */
function depthwiseBackpropInputLoop (args: Args): Info {
  const { backend, attrs } = args
  const dy = args.inputs.dy as Info
  const filter = args.inputs.filter as Info
  const inputShape = attrs.inputShape as number[]
  const info = depthwiseInfo(inputShape, filter.shape, attrs)
  const { batchSize, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, filterHeight: kh, filterWidth: kw } = info
  const m = filter.shape[3]
  const acc = new Float64Array(size(inputShape))
  const g = heap(backend, dy)
  const wt = heap(backend, filter)
  for (let b = 0; b < batchSize; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const gOff = ((b * oh + i) * ow + j) * ci * m
        for (let u = 0; u < kh; u++) {
          const r = i * info.strideHeight + u * info.dilationHeight - info.padInfo.top
          if (r < 0 || r >= h) continue
          for (let v = 0; v < kw; v++) {
            const c0 = j * info.strideWidth + v * info.dilationWidth - info.padInfo.left
            if (c0 < 0 || c0 >= w) continue
            const xOff = ((b * h + r) * w + c0) * ci
            const wOff = (u * kw + v) * ci * m
            for (let c = 0; c < ci; c++) {
              let s = 0
              for (let q = 0; q < m; q++) s += g[gOff + c * m + q] * wt[wOff + c * m + q]
              acc[xOff + c] += s
            }
          }
        }
      }
    }
  }
  const out = backend.makeOutput(inputShape, 'float32')
  heap(backend, out).set(acc)
  return out
}

// ---------------------------------------------------------------- pooling, segments

/**
 * The gradient of maxPool: each window's dy goes to its first maximum in
 * row-major order, found as the first element equal to the pool's output
 * (a window whose output is not among its elements, as NaN, searches for
 * its largest element instead); windows with a zero dy are skipped.
 */
function maxPoolGrad (args: Args): Info {
  const { backend, attrs } = args
  const dy = args.inputs.dy as Info
  const input = args.inputs.input as Info
  const output = args.inputs.output as Info
  const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], attrs.filterSize as [number, number],
    attrs.strides as [number, number], 1, attrs.pad as 'valid', attrs.dimRoundingMode as 'floor' | undefined)
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, padInfo } = info
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && padInfo.top === 0 && padInfo.left === 0 && 2 * info.outHeight <= info.inHeight && 2 * info.outWidth <= info.inWidth) {
    const out = maxPoolGrad2x2(backend, dy, input, output, info)
    if (out !== null) return out
  }
  return maxPoolGradSearch(backend, dy, input, output, info)
}

/** MaxPoolGrad of any window: for each window and channel with a non-zero dy, a search for the first element equal to the output. */
function maxPoolGradSearch (backend: BackendWasm, dy: Info, input: Info, output: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize, inHeight: h, inWidth: w, inChannels: ch, outHeight: oh, outWidth: ow, filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, padInfo } = info
  const out = zeros(backend, input.shape)
  const xs = heap(backend, input)
  const ys = heap(backend, output)
  const g = heap(backend, dy)
  const dx = heap(backend, out)
  const row = w * ch
  for (let b = 0; b < batchSize; b++) {
    for (let i = 0; i < oh; i++) {
      const r0 = Math.max(0, i * sh - padInfo.top)
      const r1 = Math.min(h, i * sh - padInfo.top + fh)
      for (let j = 0; j < ow; j++) {
        const c0 = Math.max(0, j * sw - padInfo.left)
        const c1 = Math.min(w, j * sw - padInfo.left + fw)
        const gOff = ((b * oh + i) * ow + j) * ch
        const first = ((b * h + r0) * w + c0) * ch
        for (let d = 0; d < ch; d++) {
          const gv = g[gOff + d]
          if (gv === 0) continue
          const m = ys[gOff + d]
          let at = -1
          for (let r = r0, q0 = first + d; r < r1 && at < 0; r++, q0 += row) {
            for (let c = c0, q = q0; c < c1; c++, q += ch) {
              if (xs[q] === m) { at = q; break }
            }
          }
          if (at < 0) at = firstMaximum(xs, first + d, r1 - r0, c1 - c0, row, ch)
          if (at >= 0) dx[at] += gv
        }
      }
    }
  }
  return out
}

/**
 * MaxPoolGrad of 2x2 windows with stride 2 (the cnn preset's pool): the
 * windows tile the input, so every element inside them is written once,
 * without branches (which of four is the maximum is a coin toss the
 * processor mispredicts: 2x faster so); only a last odd row or column
 * outside every window is zero-filled. Null (nothing kept) where some
 * window's output is none of its elements (NaN): maxPoolGradSearch then.
 * (A non-finite dy value reaches all four elements as NaN, not just the
 * maximum.)
 */
function maxPoolGrad2x2 (backend: BackendWasm, dy: Info, input: Info, output: Info, info: tf.backend_util.Conv2DInfo): Info | null {
  const { batchSize, inHeight: h, inWidth: w, inChannels: ch, outHeight: oh, outWidth: ow } = info
  const out = 2 * oh === h && 2 * ow === w ? backend.makeOutput(input.shape, 'float32') : zeros(backend, input.shape)
  const xs = heap(backend, input)
  const ys = heap(backend, output)
  const g = heap(backend, dy)
  const dx = heap(backend, out)
  const row = w * ch
  let missed = 0
  for (let b = 0; b < batchSize; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const gOff = ((b * oh + i) * ow + j) * ch
        const q0 = ((b * h + 2 * i) * w + 2 * j) * ch
        for (let d = 0; d < ch; d++) {
          const q = q0 + d
          const m = ys[gOff + d]
          const gv = g[gOff + d]
          // e_k: 1 for the first of the four equal to the maximum, else 0 (the last when none of the first three is)
          const e0 = +(xs[q] === m)
          const e1 = +(xs[q + ch] === m) * (1 - e0)
          const e2 = +(xs[q + row] === m) * (1 - e0 - e1)
          const e3 = 1 - e0 - e1 - e2
          missed += e3 * +(xs[q + row + ch] !== m)
          dx[q] = e0 * gv
          dx[q + ch] = e1 * gv
          dx[q + row] = e2 * gv
          dx[q + row + ch] = e3 * gv
        }
      }
    }
  }
  if (missed === 0) return out
  free(backend, out)
  return null
}

/** The index of the first largest element of a window (rows × cols, strides row and ch from `first`); −1 if none is (all NaN). */
function firstMaximum (xs: Float32Array, first: number, rows: number, cols: number, row: number, ch: number): number {
  let best = -Infinity
  let at = -1
  for (let r = 0; r < rows; r++) {
    for (let c = 0, q = first + r * row; c < cols; c++, q += ch) {
      if (xs[q] > best) { best = xs[q]; at = q }
    }
  }
  return at
}

/**
 * gather (the forward pass of embeddings) as row copies; wasm's kernel
 * computes a source index per output element. Same index check and error.
 */
function gatherV2 (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const indices = args.inputs.indices as Info
  if (x.dtype === 'string') return stock('GatherV2')(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.TensorInfo as tf.Tensor, indices as tf.TensorInfo as tf.Tensor, axis, (attrs.batchDims ?? 0) as number)
  const { batchSize, outerSize, dimSize, sliceSize } = info
  const out = backend.makeOutput(info.outputShape, x.dtype)
  const idx = backend.typedArrayFromHeap(indices)
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i]
    if (!(v >= 0 && v <= dimSize - 1)) throw new Error(`GatherV2: the index value ${v} is not in [0, ${dimSize - 1}]`)
  }
  if (size(x.shape) === 0 || size(info.outputShape) === 0) return out
  const src = backend.typedArrayFromHeap(x)
  const dst = backend.typedArrayFromHeap(out)
  const n = idx.length / batchSize
  let to = 0
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      const base = (b * outerSize + o) * dimSize * sliceSize
      for (let j = 0; j < n; j++, to += sliceSize) {
        const from = base + idx[b * n + j] * sliceSize
        if (sliceSize === 1) dst[to] = src[from]
        else dst.set(src.subarray(from, from + sliceSize), to)
      }
    }
  }
  return out
}

/** out[ids[k], ...] += x[k, ...]; ids outside [0, numSegments) are dropped. */
function unsortedSegmentSum (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const ids = args.inputs.segmentIds as Info
  const segments = attrs.numSegments as number
  const n = size(ids.shape)
  const inner = n === 0 ? 0 : size(x.shape) / n
  const shape = [segments, ...x.shape.slice(ids.shape.length)]
  const out = backend.makeOutput(shape, x.dtype)
  const dst = backend.typedArrayFromHeap(out)
  dst.fill(0)
  const src = backend.typedArrayFromHeap(x)
  const idx = backend.typedArrayFromHeap(ids)
  for (let k = 0; k < n; k++) {
    const s = idx[k]
    if (!(s >= 0 && s < segments)) continue
    const from = k * inner
    const to = s * inner
    for (let e = 0; e < inner; e++) dst[to + e] += src[from + e]
  }
  return out
}

// ---------------------------------------------------------------- tile, identity

/**
 * tile as block copies: each row of x is copied (or filled, for rows of one
 * element) into place, and each finished block is repeated by copyWithin;
 * wasm's kernel computes a source index per output element.
 */
function tile (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const reps = attrs.reps as number[]
  if (x.dtype === 'string' || x.shape.length === 0 || reps.length !== x.shape.length) return stock('Tile')(args)
  const shape = x.shape
  const r = shape.length
  const outShape = shape.map((s, i) => s * reps[i])
  const out = backend.makeOutput(outShape, x.dtype)
  if (size(outShape) === 0) return out
  const src = backend.typedArrayFromHeap(x)
  const dst = backend.typedArrayFromHeap(out)
  // strides (elements) of x and of the output
  const xs = new Array<number>(r)
  const os = new Array<number>(r)
  xs[r - 1] = 1
  os[r - 1] = 1
  for (let d = r - 2; d >= 0; d--) {
    xs[d] = xs[d + 1] * shape[d + 1]
    os[d] = os[d + 1] * outShape[d + 1]
  }
  const fill = (d: number, from: number, to: number): void => {
    const s = shape[d]
    if (d === r - 1) {
      if (s === 1) dst.fill(src[from], to, to + reps[d])
      else for (let k = 0; k < reps[d]; k++) dst.set(src.subarray(from, from + s), to + k * s)
      return
    }
    for (let i = 0; i < s; i++) fill(d + 1, from + i * xs[d], to + i * os[d])
    const block = s * os[d]
    for (let k = 1; k < reps[d]; k++) dst.copyWithin(to + k * block, to, to + block)
  }
  fill(0, 0, 0)
  return out
}

/**
 * sum over leading axes (every bias gradient: dy summed over batch, rows and
 * columns) as a loop over the wasm heap, eight columns at a time in float64:
 * wasm's kernel transposes the reduced axes innermost first, a copy that
 * costs more than the sum, and a product with a row of ones on XNNPACK packs
 * the whole input as its weights (2.5 ns a value); the loop is 2-6x faster
 * than either. Other reductions go to the stock kernel.
 */
function sum (args: Args): Info {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  const r = x.shape.length
  const axes = [...tf.util.parseAxisParam(attrs.axis as number | number[], x.shape)].sort((a, b) => a - b)
  const leading = axes.length > 0 && axes.length < r && axes.every((a, i) => a === i)
  const n = size(x.shape.slice(0, axes.length))
  const m = size(x.shape.slice(axes.length))
  if (x.dtype !== 'float32' || !leading || n * m === 0) return stock('Sum')(args)
  const shape = attrs.keepDims === true ? x.shape.map((d, i) => i < axes.length ? 1 : d) : x.shape.slice(axes.length)
  const out = backend.makeOutput(shape, 'float32')
  const xs = heap(backend, x)
  const o = heap(backend, out)
  const end = n * m
  let j = 0
  for (; j + 8 <= m; j += 8) {
    let s0 = 0; let s1 = 0; let s2 = 0; let s3 = 0; let s4 = 0; let s5 = 0; let s6 = 0; let s7 = 0
    for (let i = j; i < end; i += m) {
      s0 += xs[i]; s1 += xs[i + 1]; s2 += xs[i + 2]; s3 += xs[i + 3]
      s4 += xs[i + 4]; s5 += xs[i + 5]; s6 += xs[i + 6]; s7 += xs[i + 7]
    }
    o[j] = s0; o[j + 1] = s1; o[j + 2] = s2; o[j + 3] = s3; o[j + 4] = s4; o[j + 5] = s5; o[j + 6] = s6; o[j + 7] = s7
  }
  for (; j < m; j++) {
    let s0 = 0
    for (let i = j; i < end; i += m) s0 += xs[i]
    o[j] = s0
  }
  return out
}

/**
 * splitV as row copies into all its outputs in one kernel (an LSTM's gates:
 * [batch, 4·units] into four each timestep); wasm's kernel runs one Slice
 * kernel per output, each a JS setup of its own (about 4x the time here).
 */
function splitV (args: Args): Info | Info[] {
  const { backend, attrs } = args
  const x = args.inputs.x as Info
  if (x.dtype === 'string') return stock('SplitV')(args)
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]
  const sizes = tf.backend_util.prepareSplitSize(x, attrs.numOrSizeSplits as number[] | number, axis)
  const outer = size(x.shape.slice(0, axis))
  const inner = size(x.shape.slice(axis + 1))
  const dim = x.shape[axis]
  const outs = sizes.map(s => backend.makeOutput(x.shape.map((d, i) => i === axis ? s : d), x.dtype))
  const src = backend.typedArrayFromHeap(x)
  let begin = 0
  sizes.forEach((s, k) => {
    const dst = backend.typedArrayFromHeap(outs[k])
    const run = s * inner
    if (run > 0) {
      for (let o = 0; o < outer; o++) {
        const from = (o * dim + begin) * inner
        dst.set(src.subarray(from, from + run), o * run)
      }
    }
    begin += s
  })
  return outs
}

/** identity shares x's buffer (tensors are immutable), as the cpu backend does; wasm's copies it. */
function identity (args: Args): Info {
  const x = args.inputs.x as Info
  if (x.dtype === 'string') return stock('Identity')(args)
  args.backend.incRef(x.dataId)
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
}

/**
 * cast to the dtype x already has shares x's buffer, as identity does;
 * wasm's copies it (relu's gradient casts step(x), float32, to float32).
 */
function cast (args: Args): Info {
  const x = args.inputs.x as Info
  if (x.dtype === 'string' || args.attrs.dtype !== x.dtype) return stock('Cast')(args)
  args.backend.incRef(x.dataId)
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
}

// ---------------------------------------------------------------- gradients (any backend)

/**
 * The gradient of `tile`: dy viewed as [r0, s0, r1, s1, …] (r the
 * repetitions, s x's shape) summed over the r axes. TF.js's own slices dy
 * once per repetition and adds the pieces, one kernel pair per repetition:
 * Layers' layerNormalization tiles its moments over batch × time, so a
 * [64, 64, 32] input costs 4,096 slices and adds (seconds per step).
 */
const tileGrad: tf.GradConfig = {
  kernelName: 'Tile',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved
    const reps = (attrs as unknown as { reps: number[] }).reps
    return {
      x: () => {
        const g = dy as tf.Tensor
        const shape: number[] = []
        const axes: number[] = []
        x.shape.forEach((s, i) => {
          if (reps[i] > 1) { axes.push(shape.length); shape.push(reps[i]) }
          if (s > 1) shape.push(s)
        })
        const summed = axes.length === 0 ? g : tf.sum(tf.reshape(g, shape), axes)
        return tf.reshape(summed, x.shape)
      }
    }
  }
}

const FAST_GRADIENTS: tf.GradConfig[] = [tileGrad]

/** The gradients ours replaced, to restore; null while ours are not registered. */
let replacedGradients: Map<string, tf.GradConfig | undefined> | null = null

/**
 * Registers faster gradient functions (backend-independent: they are
 * TF.js's gradients written with fewer kernels). Idempotent.
 */
export function registerFastGradients (): void {
  if (replacedGradients !== null) return
  const saved = new Map<string, tf.GradConfig | undefined>()
  for (const config of FAST_GRADIENTS) {
    saved.set(config.kernelName, tf.getGradient(config.kernelName) as tf.GradConfig | undefined)
    tf.registerGradient(config)
  }
  replacedGradients = saved
}

/** Puts TF.js's own gradients back. */
export function unregisterFastGradients (): void {
  if (replacedGradients === null) return
  for (const [name, previous] of replacedGradients) {
    if (previous !== undefined) tf.registerGradient(previous)
  }
  replacedGradients = null
}

// ---------------------------------------------------------------- registration

/** Ours, by kernel name. */
const FAST: Record<string, Kernel> = {
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  Conv2DBackpropInput: conv2DBackpropInput,
  DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter,
  DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput,
  MaxPoolGrad: maxPoolGrad,
  UnsortedSegmentSum: unsortedSegmentSum,
  Tile: tile,
  GatherV2: gatherV2,
  Sum: sum,
  SplitV: splitV as unknown as Kernel,
  Identity: identity,
  Cast: cast
}

/** Stock wasm kernels ours call. */
const CALLED = ['BatchMatMul', '_FusedMatMul', 'Transpose', 'Conv2D', 'DepthwiseConv2dNative', 'Sum', 'SplitV', 'Slice', 'Add', 'Reshape', 'Tile', 'Identity', 'Cast', 'GatherV2', ...Object.values(ACTIVATIONS) as string[]]

/** The names of the kernels registerFastWasmKernels replaces or adds. */
export const FAST_WASM_KERNELS: readonly string[] = Object.keys(FAST)

/**
 * Registers the faster kernels on the wasm backend, replacing the stock ones
 * (kept, to call and to restore). Idempotent. The wasm backend's package must
 * be loaded first (its import registers its kernels, and would overwrite ours).
 */
export function registerFastWasmKernels (): void {
  registerFastGradients()
  if (replaced !== null) return
  for (const name of CALLED) {
    const config = tf.getKernel(name, BACKEND)
    if (config === undefined) throw new Error('registerFastWasmKernels: load @tensorflow/tfjs-backend-wasm first')
    stockFuncs.set(name, config.kernelFunc as unknown as Kernel)
  }
  const saved = new Map<string, tf.KernelConfig | undefined>()
  for (const [name, kernelFunc] of Object.entries(FAST)) {
    const previous = tf.getKernel(name, BACKEND)
    if (previous !== undefined) tf.unregisterKernel(name, BACKEND)
    saved.set(name, previous)
    // the stock setup (wasm function lookups) still has to run if the backend initialises later
    tf.registerKernel({
      kernelName: name,
      backendName: BACKEND,
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
      setupFunc: previous?.setupFunc,
      disposeFunc: previous?.disposeFunc
    })
  }
  replaced = saved
}

/** Puts the stock wasm kernels back (a no-op when ours are not registered). */
export function unregisterFastWasmKernels (): void {
  unregisterFastGradients()
  if (replaced === null) return
  for (const [name, previous] of replaced) {
    tf.unregisterKernel(name, BACKEND)
    if (previous !== undefined) tf.registerKernel(previous)
  }
  replaced = null
}

/** Whether the faster kernels are registered now. */
export function fastWasmKernelsRegistered (): boolean {
  return replaced !== null
}
