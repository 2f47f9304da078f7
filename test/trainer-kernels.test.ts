/**
 * The faster wasm kernels (node/trainer/kernels.ts) against the cpu backend's
 * stock kernels, on real TensorFlow.js: each registered kernel on random
 * inputs of several shapes, and the gradients of small stock Layers models by
 * tf.variableGrads.
 *
 * Tolerance: |wasm − cpu| ≤ 1e-5 · max(1, max |cpu|) over each tensor, that
 * is 1e-5 absolute where values are at most 1 and relative to the tensor's
 * largest magnitude where they are larger.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs'
import '@tensorflow/tfjs-backend-wasm'
import { FAST_WASM_KERNELS, fastWasmKernelsRegistered, registerFastWasmKernels, setIm2colBlock, unregisterFastWasmKernels } from '../node/trainer/kernels.ts'
import { useWasmThreads } from '../node/trainer/wasm-threads.ts'

const TOLERANCE = 1e-5

/** mulberry32: seeded uniform floats in [0, 1). */
function random (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Data { shape: number[], values: Float32Array | Int32Array, dtype: 'float32' | 'int32' }

let seed = 1
function normal (shape: number[]): Data {
  const next = random(seed++)
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1))
  for (let i = 0; i < values.length; i++) values[i] = 2 * (next() + next() + next() - 1.5)
  return { shape, values, dtype: 'float32' }
}

function ints (shape: number[], lo: number, hi: number): Data {
  const next = random(seed++)
  const values = new Int32Array(shape.reduce((a, b) => a * b, 1))
  for (let i = 0; i < values.length; i++) values[i] = lo + Math.floor(next() * (hi - lo))
  return { shape, values, dtype: 'int32' }
}

function assertClose (actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: size`)
  let scale = 1
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]))
  let worst = 0
  let at = -1
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i])
    if (!(d <= worst)) { worst = d; at = i }
  }
  assert.ok(worst <= TOLERANCE * scale, `${what}: |diff| ${worst} at ${at} (${actual[at]} vs ${expected[at]}) > ${TOLERANCE} x ${scale}`)
}

/** Runs one kernel on the current backend; returns its output's shape and values. */
function runKernel (name: string, inputs: Record<string, Data>, attrs: Record<string, unknown>): { shape: number[], values: Float32Array | Int32Array } {
  const tensors: Record<string, tf.Tensor> = {}
  for (const [k, d] of Object.entries(inputs)) tensors[k] = tf.tensor(d.values, d.shape, d.dtype)
  const out = tf.engine().runKernel(name, tensors, attrs as tf.NamedAttrMap) as tf.Tensor
  const result = { shape: out.shape, values: out.dataSync() as Float32Array | Int32Array }
  out.dispose()
  for (const t of Object.values(tensors)) t.dispose()
  return result
}

/** The kernel on cpu (reference) and on wasm with the fast kernels: equal within the tolerance, and no tensor left behind. */
async function compareKernel (name: string, inputs: Record<string, Data>, attrs: Record<string, unknown>, what: string): Promise<void> {
  await tf.setBackend('cpu')
  const expected = runKernel(name, inputs, attrs)
  await tf.setBackend('wasm')
  const backend = tf.backend() as unknown as { numDataIds: () => number }
  runKernel(name, inputs, attrs) // first call: any lazy setup
  const tensors = tf.memory().numTensors
  const buffers = backend.numDataIds()
  const actual = runKernel(name, inputs, attrs)
  assert.equal(tf.memory().numTensors, tensors, `${what}: tensors leaked`)
  assert.equal(backend.numDataIds(), buffers, `${what}: wasm buffers leaked`)
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`)
  assertClose(actual.values, expected.values, what)
}

function convOutShape (x: number[], filter: number[], strides: number | [number, number], pad: unknown, depthwise = false, dilations: number | [number, number] = 1): number[] {
  return tf.backend_util.computeConv2DInfo(x as [number, number, number, number], filter as [number, number, number, number], strides, dilations, pad as 'valid', undefined, depthwise).outShape
}

before(async () => {
  // PEER_WASM_THREADS=2 runs all of this on the threaded build (test/trainer-kernels-threads.test.ts checks it briefly)
  await useWasmThreads(Number(process.env.PEER_WASM_THREADS ?? 1))
  await tf.setBackend('wasm')
  await tf.ready()
  await tf.setBackend('cpu')
  await tf.ready()
  registerFastWasmKernels()
})

after(() => {
  unregisterFastWasmKernels()
})

describe('registerFastWasmKernels', () => {
  it('is idempotent and unregisterFastWasmKernels restores the stock kernels', () => {
    const fast = tf.getKernel('BatchMatMul', 'wasm')
    registerFastWasmKernels()
    assert.equal(tf.getKernel('BatchMatMul', 'wasm'), fast)
    unregisterFastWasmKernels()
    assert.equal(fastWasmKernelsRegistered(), false)
    const stock = tf.getKernel('BatchMatMul', 'wasm')
    assert.notEqual(stock, fast)
    assert.equal(tf.getKernel('Conv2DBackpropFilter', 'wasm'), undefined, 'wasm has no Conv2DBackpropFilter of its own')
    registerFastWasmKernels()
    assert.equal(fastWasmKernelsRegistered(), true)
    for (const name of FAST_WASM_KERNELS) assert.ok(tf.getKernel(name, 'wasm') !== undefined, name)
  })
})

describe('fast wasm kernels equal the cpu kernels', () => {
  it('BatchMatMul: every transpose combination, with batch dimensions', async () => {
    // [m, k, n, batch dims of a, batch dims of b]
    const cases: Array<[number, number, number, number[], number[]]> = [
      [5, 7, 3, [], []],
      [1, 9, 4, [], []],
      [6, 5, 4, [3], [3]],
      [4, 6, 5, [2, 3], [2, 3]],
      [32, 20, 48, [], []],
      [4, 300, 300, [], []], // a batch-sized a against a large b: transposes the small operands
      [300, 4, 2, [2], [2]],
      [5, 6, 4, [1], [3]], // broadcast batch dimensions
      [5, 6, 4, [3], []],
      [5, 6, 4, [], [3]],
      [16, 8, 16, [24], [24]], // attention-sized: many small products
      [7, 9, 33, [4], [1]]
    ]
    for (const [m, k, n, ba, bb] of cases) {
      for (const transposeA of [false, true]) {
        for (const transposeB of [false, true]) {
          const a = normal([...ba, ...(transposeA ? [k, m] : [m, k])])
          const b = normal([...bb, ...(transposeB ? [n, k] : [k, n])])
          await compareKernel('BatchMatMul', { a, b }, { transposeA, transposeB }, `BatchMatMul ${a.shape}x${b.shape} tA=${transposeA} tB=${transposeB}`)
        }
      }
    }
  })

  it('_FusedMatMul: transposes, batches (where the stock wasm kernel adds the bias wrongly), activations', async () => {
    // [batch of a, batch of b]: a shared b (a's batch as one tall matrix), or a batch of both
    for (const [batchA, batchB] of [[1, 1], [3, 3], [3, 1], [1, 3]]) {
      for (const activation of ['linear', 'relu', 'leakyrelu', 'sigmoid']) {
        for (const transposeA of [false, true]) {
          for (const transposeB of [false, true]) {
            for (const biased of [true, false]) {
              // the kernel takes rank-3 operands (tf.fused.matMul reshapes to them)
              const a = normal(transposeA ? [batchA, 12, 8] : [batchA, 8, 12])
              const b = normal(transposeB ? [batchB, 10, 12] : [batchB, 12, 10])
              const inputs: Record<string, Data> = biased ? { a, b, bias: normal([10]) } : { a, b }
              await compareKernel('_FusedMatMul', inputs, { transposeA, transposeB, activation, leakyreluAlpha: 0.2 },
                `_FusedMatMul batch=${batchA}/${batchB} ${activation} tA=${transposeA} tB=${transposeB} bias=${biased}`)
            }
          }
        }
      }
    }
  })

  // [x shape, filter shape, strides, pad]
  const convs: Array<[number[], number[], [number, number], unknown]> = [
    [[2, 9, 9, 3], [3, 3, 3, 4], [1, 1], 'valid'],
    [[3, 10, 9, 2], [3, 3, 2, 5], [2, 2], 'same'],
    [[1, 11, 8, 3], [4, 2, 3, 2], [3, 2], 'valid'],
    [[2, 8, 8, 1], [5, 5, 1, 3], [1, 1], 'same'],
    [[2, 9, 10, 2], [3, 3, 2, 3], [2, 1], [[0, 0], [1, 2], [0, 1], [0, 0]]],
    [[4, 28, 28, 1], [5, 5, 1, 8], [1, 1], 'valid'],
    // stride 1 (the filter gradient's full-width rows): channels with padding, asymmetric explicit padding, the cnn preset's second layer
    [[3, 6, 6, 2], [3, 3, 2, 4], [1, 1], 'same'],
    [[2, 7, 6, 3], [3, 2, 3, 2], [1, 1], [[0, 0], [2, 1], [0, 3], [0, 0]]],
    [[16, 12, 12, 8], [3, 3, 8, 16], [1, 1], 'valid'],
    // valid, output channels in fours (the filter gradient in wasm SIMD): strides; 20 channels (16 + 4); 12 (three vectors)
    [[2, 11, 10, 3], [3, 3, 3, 8], [2, 3], 'valid'],
    [[2, 7, 7, 2], [2, 3, 2, 20], [1, 1], 'valid'],
    [[3, 6, 5, 5], [3, 2, 5, 12], [1, 1], 'valid'],
    // valid, stride 1, five output channels: the full-width rows
    [[2, 9, 9, 3], [3, 3, 3, 5], [1, 1], 'valid']
  ]

  it('Conv2DBackpropFilter: an input whose patches span several blocks (summed)', async () => {
    const previous = setIm2colBlock(1000) // 9x9x3 images, 3x3x3 taps: 1,323 patch elements per image (1,701 in full-width rows), one image per block
    try {
      for (const [xs, fs, strides, pad] of [...convs.slice(0, 4), ...convs.slice(6, 8)]) {
        const x = normal(xs)
        const dy = normal(convOutShape(xs, fs, strides, pad))
        await compareKernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape: fs }, `Conv2DBackpropFilter in blocks x=${xs} f=${fs}`)
      }
    } finally {
      setIm2colBlock(previous)
    }
  })

  it('Conv2DBackpropFilter: strides, valid, same and explicit padding', async () => {
    for (const [xs, fs, strides, pad] of convs) {
      const x = normal(xs)
      const dy = normal(convOutShape(xs, fs, strides, pad))
      await compareKernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape: fs }, `Conv2DBackpropFilter x=${xs} f=${fs} s=${strides} pad=${JSON.stringify(pad)}`)
    }
  })

  it('Conv2DBackpropInput: strides, valid, same and explicit padding', async () => {
    for (const [xs, fs, strides, pad] of convs) {
      const filter = normal(fs)
      const dy = normal(convOutShape(xs, fs, strides, pad))
      await compareKernel('Conv2DBackpropInput', { dy, filter }, { inputShape: xs, strides, pad, dataFormat: 'NHWC' }, `Conv2DBackpropInput x=${xs} f=${fs} s=${strides} pad=${JSON.stringify(pad)}`)
    }
  })

  // [x shape, filter shape (multiplier last), strides, pad, dilations]; dilations stay 1: the
  // cpu kernel ignores them (autodiff of a dilated depthwise conv2d refuses to run anyway)
  const depthwise: Array<[number[], number[], [number, number], unknown, [number, number]]> = [
    [[2, 9, 9, 3], [3, 3, 3, 2], [1, 1], 'valid', [1, 1]],
    [[3, 10, 9, 2], [3, 3, 2, 1], [2, 2], 'same', [1, 1]],
    [[1, 11, 8, 4], [2, 4, 4, 3], [2, 3], 'valid', [1, 1]],
    [[2, 10, 10, 2], [5, 5, 2, 2], [1, 1], 'same', [1, 1]]
  ]

  it('DepthwiseConv2dNativeBackpropFilter and Input: multipliers, strides, padding', async () => {
    for (const [xs, fs, strides, pad, dilations] of depthwise) {
      const what = `x=${xs} f=${fs} s=${strides} pad=${String(pad)} d=${dilations}`
      const dy = normal(convOutShape(xs, fs, strides, pad, true, dilations))
      await compareKernel('DepthwiseConv2dNativeBackpropFilter', { x: normal(xs), dy }, { strides, pad, dilations, filterShape: fs }, `DepthwiseConv2dNativeBackpropFilter ${what}`)
      await compareKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter: normal(fs) }, { strides, pad, dilations, inputShape: xs }, `DepthwiseConv2dNativeBackpropInput ${what}`)
    }
  })

  it('MaxPoolGrad: window sizes, strides, padding, and ties (to the first maximum, as cpu)', async () => {
    const pools: Array<[number[], [number, number], [number, number], 'valid' | 'same']> = [
      [[2, 8, 8, 3], [2, 2], [2, 2], 'valid'],
      [[2, 9, 7, 2], [3, 3], [2, 2], 'same'],
      [[1, 10, 10, 4], [3, 2], [1, 2], 'valid'],
      [[2, 7, 9, 3], [2, 2], [2, 2], 'same'], // windows cut by the padding
      [[2, 9, 7, 2], [2, 2], [2, 2], 'valid'] // a last row and column in no window
    ]
    for (const [xs, filterSize, strides, pad] of pools) {
      for (const ties of [false, true]) {
        const input = normal(xs)
        if (ties) for (let i = 0; i < input.values.length; i++) input.values[i] = Math.max(0, Math.round(input.values[i])) // relu-like: many equal values
        await tf.setBackend('cpu')
        const pooled = tf.tidy(() => tf.maxPool(tf.tensor4d(input.values, xs as [number, number, number, number]), filterSize, strides, pad))
        const output: Data = { shape: pooled.shape, values: pooled.dataSync() as Float32Array, dtype: 'float32' }
        pooled.dispose()
        await compareKernel('MaxPoolGrad', { dy: normal(output.shape), input, output }, { filterSize, strides, pad }, `MaxPoolGrad x=${xs} f=${filterSize} s=${strides} ${pad} ties=${ties}`)
        // an output that is not the pool's (NaN in some windows): the cpu kernel ignores it, ours searches those windows' maxima
        const odd: Data = { ...output, values: output.values.map((v, i) => i % 3 === 0 ? NaN : v) }
        await compareKernel('MaxPoolGrad', { dy: normal(output.shape), input, output: odd }, { filterSize, strides, pad }, `MaxPoolGrad x=${xs} f=${filterSize} s=${strides} ${pad} ties=${ties}, NaN outputs`)
      }
    }
  })

  it('Sum: leading axes (as a product), other axes, keepDims, int32', async () => {
    const cases: Array<[number[], number | number[], boolean]> = [
      [[6, 5], 0, false], [[4, 3, 5], [0, 1], false], [[4, 3, 5], [1, 0], true], [[2, 3, 4, 5], [0, 1, 2], false],
      [[4, 3, 5], [1], false], [[4, 3, 5], [0, 2], false], [[4, 3, 5], [0, 1, 2], false], [[7], 0, false], [[300, 40], 0, true]
    ]
    for (const [shape, axis, keepDims] of cases) await compareKernel('Sum', { x: normal(shape) }, { axis, keepDims }, `Sum ${shape} axis ${axis} keepDims ${keepDims}`)
    await compareKernel('Sum', { x: ints([5, 3], -9, 9) }, { axis: 0, keepDims: false }, 'Sum int32')
  })

  it('SplitV: axes, sizes with a -1, a size 0, int32', async () => {
    const cases: Array<[Data, number[] | number, number]> = [
      [normal([32, 256]), 4, 1], [normal([4, 6, 5]), [2, -1, 1], 1], [normal([6, 3]), [0, 4, 2], 0],
      [normal([2, 3, 8]), [3, 5], -1], [ints([5, 6], -9, 9), 3, 1]
    ]
    for (const [x, numOrSizeSplits, axis] of cases) {
      const what = `SplitV ${x.shape} ${JSON.stringify(numOrSizeSplits)} axis ${axis}`
      const run = (): Array<{ shape: number[], values: ArrayLike<number> }> => {
        const t = tf.tensor(x.values, x.shape, x.dtype)
        const outs = tf.engine().runKernel('SplitV', { x: t }, { numOrSizeSplits, axis }) as unknown as tf.Tensor[]
        const result = outs.map(o => ({ shape: o.shape, values: o.dataSync() as ArrayLike<number> }))
        tf.dispose([t, ...outs])
        return result
      }
      await tf.setBackend('cpu')
      const expected = run()
      await tf.setBackend('wasm')
      run()
      const buffers = (tf.backend() as unknown as { numDataIds: () => number }).numDataIds()
      const actual = run()
      assert.equal((tf.backend() as unknown as { numDataIds: () => number }).numDataIds(), buffers, `${what}: wasm buffers leaked`)
      assert.equal(actual.length, expected.length, what)
      actual.forEach((a, k) => {
        assert.deepEqual(a.shape, expected[k].shape, `${what}: shape ${k}`)
        assert.deepEqual(Array.from(a.values), Array.from(expected[k].values), `${what}: output ${k}`)
      })
    }
  })

  it('Tile: ranks 1-4, rows of one element, int32 and bool', async () => {
    const cases: Array<[number[], number[]]> = [[[5], [3]], [[2, 3], [2, 1]], [[4, 4, 1], [1, 1, 6]], [[1, 1, 7], [3, 4, 1]], [[2, 3, 2, 2], [2, 1, 3, 2]], [[3, 1], [1, 1]]]
    for (const [shape, reps] of cases) await compareKernel('Tile', { x: normal(shape) }, { reps }, `Tile ${shape} reps ${reps}`)
    await compareKernel('Tile', { x: ints([3, 2], -9, 9) }, { reps: [2, 3] }, 'Tile int32')
    const bools: Data = { shape: [2, 3], values: Int32Array.from([1, 0, 0, 1, 1, 0]), dtype: 'int32' }
    await tf.setBackend('cpu')
    const expected = tf.tidy(() => tf.tile(tf.cast(tf.tensor(bools.values, bools.shape, 'int32'), 'bool'), [2, 2]).dataSync())
    await tf.setBackend('wasm')
    const actual = tf.tidy(() => tf.tile(tf.cast(tf.tensor(bools.values, bools.shape, 'int32'), 'bool'), [2, 2]).dataSync())
    assert.deepEqual(Array.from(actual), Array.from(expected), 'Tile bool')
  })

  it('Identity shares its input\'s buffer, and the input can be disposed first', async () => {
    await tf.setBackend('wasm')
    const x = tf.tensor([1, 2, 3])
    const y = tf.engine().runKernel('Identity', { x }) as tf.Tensor
    x.dispose()
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3])
    y.dispose()
    await compareKernel('Identity', { x: normal([4, 3]) }, {}, 'Identity')
  })

  it('Cast to the same dtype shares its input\'s buffer; to another dtype converts', async () => {
    await tf.setBackend('wasm')
    const x = tf.tensor([1.5, -2, 3])
    const y = tf.engine().runKernel('Cast', { x }, { dtype: 'float32' }) as tf.Tensor
    x.dispose()
    assert.deepEqual(Array.from(y.dataSync()), [1.5, -2, 3])
    y.dispose()
    await compareKernel('Cast', { x: normal([4, 3]) }, { dtype: 'float32' }, 'Cast float32')
    await compareKernel('Cast', { x: normal([4, 3]) }, { dtype: 'int32' }, 'Cast to int32')
    await compareKernel('Cast', { x: ints([5], -3, 3) }, { dtype: 'int32' }, 'Cast int32')
    await compareKernel('Cast', { x: ints([5], -3, 3) }, { dtype: 'float32' }, 'Cast int32 to float32')
  })

  it('GatherV2: axes, batch dimensions, rows of one element, int32; an index out of range throws', async () => {
    await compareKernel('GatherV2', { x: normal([10, 4]), indices: ints([7], 0, 10) }, { axis: 0, batchDims: 0 }, 'GatherV2 rows')
    await compareKernel('GatherV2', { x: normal([10, 4]), indices: ints([3, 5], 0, 10) }, { axis: 0, batchDims: 0 }, 'GatherV2 rows, rank-2 indices')
    await compareKernel('GatherV2', { x: normal([3, 10, 2]), indices: ints([6], 0, 10) }, { axis: 1, batchDims: 0 }, 'GatherV2 axis 1')
    await compareKernel('GatherV2', { x: normal([4, 9]), indices: ints([5], 0, 9) }, { axis: 1, batchDims: 0 }, 'GatherV2 last axis')
    await compareKernel('GatherV2', { x: normal([2, 6, 3]), indices: ints([2, 4], 0, 6) }, { axis: 1, batchDims: 1 }, 'GatherV2 batchDims 1')
    await compareKernel('GatherV2', { x: ints([8, 2], -5, 5), indices: ints([4], 0, 8) }, { axis: 0, batchDims: 0 }, 'GatherV2 int32')
    await tf.setBackend('wasm')
    assert.throws(() => tf.tidy(() => tf.gather(tf.zeros([3, 2]), tf.tensor1d([0, 3], 'int32'))), /index value 3 is not in \[0, 2\]/)
  })

  it('UnsortedSegmentSum: repeated, missing and out-of-range segment ids', async () => {
    await compareKernel('UnsortedSegmentSum', { x: normal([7, 4]), segmentIds: ints([7], -1, 6) }, { numSegments: 5 }, 'UnsortedSegmentSum [7,4]')
    await compareKernel('UnsortedSegmentSum', { x: normal([5, 2, 3]), segmentIds: ints([5], 0, 4) }, { numSegments: 4 }, 'UnsortedSegmentSum [5,2,3]')
    await compareKernel('UnsortedSegmentSum', { x: ints([9, 3], -5, 5), segmentIds: ints([9], 0, 3) }, { numSegments: 3 }, 'UnsortedSegmentSum int32')
  })
})

// ---------------------------------------------------------------- stock Layers models

const BATCH = 6

interface ModelCase {
  name: string
  make: () => tf.LayersModel
  input: () => Data
  outputs: number
}

const MODELS: ModelCase[] = [
  {
    name: 'dense',
    make: () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [20], units: 32, activation: 'relu' }), tf.layers.dense({ units: 16, activation: 'tanh' }), tf.layers.dense({ units: 5 })] }),
    input: () => normal([BATCH, 20]),
    outputs: 5
  },
  {
    name: 'conv2d + maxPooling2d + averagePooling2d',
    make: () => tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [12, 12, 3], filters: 4, kernelSize: 3, activation: 'relu' }),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }),
        tf.layers.averagePooling2d({ poolSize: 2, padding: 'same' }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 5 })
      ]
    }),
    input: () => normal([BATCH, 12, 12, 3]),
    outputs: 5
  },
  {
    name: 'depthwiseConv2d + separableConv2d + globalAveragePooling2d',
    make: () => tf.sequential({
      layers: [
        tf.layers.depthwiseConv2d({ inputShape: [10, 10, 3], kernelSize: 3, depthMultiplier: 2, activation: 'relu' }),
        tf.layers.separableConv2d({ kernelSize: 3, filters: 4, strides: 2, padding: 'same' }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 5 })
      ]
    }),
    input: () => normal([BATCH, 10, 10, 3]),
    outputs: 5
  },
  {
    name: 'conv1d + maxPooling1d',
    make: () => tf.sequential({
      layers: [
        tf.layers.conv1d({ inputShape: [20, 3], kernelSize: 3, filters: 4, activation: 'relu' }),
        tf.layers.maxPooling1d({ poolSize: 2 }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 5 })
      ]
    }),
    input: () => normal([BATCH, 20, 3]),
    outputs: 5
  },
  {
    name: 'batchNormalization',
    make: () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [20], units: 24 }), tf.layers.batchNormalization(), tf.layers.activation({ activation: 'relu' }), tf.layers.dense({ units: 5 })] }),
    input: () => normal([BATCH, 20]),
    outputs: 5
  },
  {
    name: 'embedding',
    make: () => tf.sequential({ layers: [tf.layers.embedding({ inputDim: 30, outputDim: 8, inputLength: 7 }), tf.layers.flatten(), tf.layers.dense({ units: 5 })] }),
    input: () => ints([BATCH, 7], 0, 30),
    outputs: 5
  },
  {
    name: 'lstm',
    make: () => tf.sequential({ layers: [tf.layers.lstm({ inputShape: [6, 4], units: 8, returnSequences: true }), tf.layers.lstm({ units: 8 }), tf.layers.dense({ units: 5 })] }),
    input: () => normal([BATCH, 6, 4]),
    outputs: 5
  },
  {
    name: 'gru',
    make: () => tf.sequential({ layers: [tf.layers.gru({ inputShape: [6, 4], units: 8 }), tf.layers.dense({ units: 5 })] }),
    input: () => normal([BATCH, 6, 4]),
    outputs: 5
  },
  {
    name: 'embedding + dense and layerNormalization over a sequence + globalMaxPooling1d',
    make: () => tf.sequential({
      layers: [
        tf.layers.embedding({ inputDim: 30, outputDim: 8, inputLength: 7 }),
        tf.layers.dense({ units: 12, activation: 'relu' }), // on rank 3
        tf.layers.layerNormalization(),
        tf.layers.globalMaxPooling1d({}),
        tf.layers.dense({ units: 5 })
      ]
    }),
    input: () => ints([BATCH, 7], 0, 30),
    outputs: 5
  },
  {
    name: 'layerNormalization',
    make: () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [20], units: 24 }), tf.layers.layerNormalization(), tf.layers.dense({ units: 5 })] }),
    input: () => normal([BATCH, 20]),
    outputs: 5
  }
]

interface Weights { shape: number[], values: Float32Array }

/** Loss and gradients of every trainable weight (in model order), by tf.variableGrads on the current backend. */
function gradients (model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): { loss: number, grads: Float32Array[] } {
  const vars = model.trainableWeights.map(w => w.read() as tf.Variable)
  const { value, grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, vars)
  const result = { loss: value.dataSync()[0], grads: vars.map(v => grads[v.name].dataSync() as Float32Array) }
  value.dispose()
  tf.dispose(grads)
  return result
}

describe('gradients of stock Layers models: wasm with the fast kernels equal cpu', () => {
  for (const c of MODELS) {
    it(c.name, async () => {
      const input = c.input()
      const target = normal([BATCH, c.outputs])
      await tf.setBackend('cpu')
      const reference = c.make()
      const weights: Weights[] = reference.getWeights().map(w => ({ shape: w.shape, values: w.dataSync() as Float32Array }))
      const expected = tf.tidy(() => gradients(reference, tf.tensor(input.values, input.shape, input.dtype), tf.tensor(target.values, target.shape)))
      reference.dispose()

      await tf.setBackend('wasm')
      const model = c.make()
      const reset = (): void => { tf.tidy(() => { model.setWeights(weights.map(w => tf.tensor(w.values, w.shape))) }) }
      reset()
      const x = tf.tensor(input.values, input.shape, input.dtype)
      const y = tf.tensor(target.values, target.shape)
      // batch normalisation moves its statistics on every training call: they are set back before each
      const first = tf.tidy(() => gradients(model, x, y))
      reset()
      const tensors = tf.memory().numTensors
      for (let i = 0; i < 3; i++) {
        const again = tf.tidy(() => gradients(model, x, y))
        assert.equal(tf.memory().numTensors, tensors, `${c.name}: tensors leaked on call ${i + 2}`)
        assert.deepEqual(again.grads, first.grads, `${c.name}: repeated calls agree`)
        reset()
      }
      const actual = tf.tidy(() => gradients(model, x, y))
      assert.ok(Math.abs(actual.loss - expected.loss) <= TOLERANCE * Math.max(1, Math.abs(expected.loss)), `${c.name}: loss ${actual.loss} vs ${expected.loss}`)
      assert.equal(actual.grads.length, expected.grads.length)
      for (let k = 0; k < expected.grads.length; k++) {
        assertClose(actual.grads[k], expected.grads[k], `${c.name}: gradient of ${model.trainableWeights[k].originalName}`)
      }
      x.dispose()
      y.dispose()
      model.dispose()
    })
  }
})

describe('fast gradients equal TF.js\'s own', () => {
  it('tile: ranks 1-4 (on cpu, with and without the fast gradient)', async () => {
    await tf.setBackend('cpu')
    const cases: Array<[number[], number[]]> = [[[5], [3]], [[2, 3], [2, 1]], [[4, 4, 1], [1, 1, 6]], [[1, 1, 7], [3, 4, 1]], [[2, 3, 2, 2], [2, 1, 3, 2]], [[3, 1], [1, 1]]]
    for (const [shape, reps] of cases) {
      const x = normal(shape)
      const w = normal(shape.map((s, i) => s * reps[i]))
      const grad = (): Float32Array => tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.tile(t, reps), tf.tensor(w.values, w.shape))))(tf.tensor(x.values, shape)).dataSync() as Float32Array)
      const fast = grad()
      unregisterFastWasmKernels()
      const own = grad()
      registerFastWasmKernels()
      assertClose(fast, own, `tile gradient ${shape} reps ${reps}`)
    }
  })
})

// ---------------------------------------------------------------- a causal attention block in tf ops

/**
 * One pre-norm transformer block as a GPT writes it: layer norm, causal
 * multi-head self-attention (batched matMuls with transposes, softmax), an
 * MLP, residuals; loss = mean squared error of its output.
 */
function attentionLoss (p: Record<string, tf.Tensor>, x: tf.Tensor3D, target: tf.Tensor3D, heads: number): tf.Scalar {
  const [batch, time, dim] = x.shape
  const hd = dim / heads
  const norm = (h: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor => {
    const { mean, variance } = tf.moments(h, -1, true)
    return tf.add(tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b)
  }
  const split = (h: tf.Tensor): tf.Tensor => tf.transpose(tf.reshape(h, [batch, time, heads, hd]), [0, 2, 1, 3]) // [b, heads, t, hd]
  const h = norm(x, p.g1, p.b1)
  const flat = tf.reshape(h, [batch * time, dim])
  const q = split(tf.matMul(flat, p.wq))
  const k = split(tf.matMul(flat, p.wk))
  const v = split(tf.matMul(flat, p.wv))
  const mask = tf.linalg.bandPart(tf.ones([time, time]), -1, 0) // lower triangle
  const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(hd)), tf.mul(tf.sub(1, mask), -1e9))
  const attended = tf.matMul(tf.softmax(scores), v) // [b, heads, t, hd]
  // (tf.matMul of rank 3 by rank 2 has no gradient in TF.js: its gradient of b keeps the batch)
  const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * time, dim])
  const r = tf.add(x, tf.reshape(tf.matMul(merged, p.wo), [batch, time, dim]))
  const m = tf.reshape(norm(r, p.g2, p.b2), [batch * time, dim])
  const mlp = tf.matMul(tf.relu(tf.add(tf.matMul(m, p.w1), p.c1)), p.w2)
  const out = tf.add(r, tf.reshape(mlp, [batch, time, dim]))
  return tf.losses.meanSquaredError(target, out) as tf.Scalar
}

describe('gradients of a causal attention block in tf ops: wasm with the fast kernels equal cpu', () => {
  it('layer norm, batched matMuls with transposes, causal softmax, MLP', async () => {
    const [batch, time, dim, heads] = [3, 8, 16, 4]
    const shapes: Record<string, number[]> = {
      g1: [dim], b1: [dim], wq: [dim, dim], wk: [dim, dim], wv: [dim, dim], wo: [dim, dim], g2: [dim], b2: [dim], w1: [dim, 2 * dim], c1: [2 * dim], w2: [2 * dim, dim]
    }
    const values = Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, normal(shape)]))
    for (const d of Object.values(values)) for (let i = 0; i < d.values.length; i++) d.values[i] *= 0.3
    const input = normal([batch, time, dim])
    const target = normal([batch, time, dim])
    const run = (): { loss: number, grads: Record<string, Float32Array> } => tf.tidy(() => {
      const vars = Object.fromEntries(Object.entries(values).map(([name, d]) => [name, tf.variable(tf.tensor(d.values, d.shape), true)]))
      const x = tf.tensor3d(input.values as Float32Array, input.shape as [number, number, number])
      const y = tf.tensor3d(target.values as Float32Array, target.shape as [number, number, number])
      const { value, grads } = tf.variableGrads(() => attentionLoss(vars, x, y, heads), Object.values(vars))
      const out = { loss: value.dataSync()[0], grads: Object.fromEntries(Object.entries(vars).map(([name, v]) => [name, grads[v.name].dataSync() as Float32Array])) }
      tf.dispose(Object.values(vars))
      return out
    })
    await tf.setBackend('cpu')
    const expected = run()
    await tf.setBackend('wasm')
    run()
    const tensors = tf.memory().numTensors
    const actual = run()
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked')
    assert.ok(Math.abs(actual.loss - expected.loss) <= TOLERANCE * Math.max(1, Math.abs(expected.loss)), `loss ${actual.loss} vs ${expected.loss}`)
    for (const name of Object.keys(shapes)) assertClose(actual.grads[name], expected.grads[name], `attention: gradient of ${name}`)
  })
})
