/**
 * The threaded wasm build under Node (node/trainer/wasm-threads.ts): it
 * starts with the threads asked for, its kernels (stock and kernels.ts's)
 * give the cpu backend's results, and its workers do not keep the process
 * alive (the test runner would time this file out).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as tf from '@tensorflow/tfjs'
import { registerFastWasmKernels } from '../node/trainer/kernels.ts'
import { MAX_WASM_THREADS, useWasmThreads, wasmThreads } from '../node/trainer/wasm-threads.ts'

describe('wasm threads', () => {
  it('rejects thread counts outside 1 … 8', async () => {
    await assert.rejects(useWasmThreads(0), RangeError)
    await assert.rejects(useWasmThreads(MAX_WASM_THREADS + 1), RangeError)
    await assert.rejects(useWasmThreads(1.5), RangeError)
  })

  it('runs 2 threads, and a conv net\'s gradients equal cpu\'s', async () => {
    await useWasmThreads(2)
    registerFastWasmKernels()
    const run = (): Float32Array[] => tf.tidy(() => {
      const x = tf.tensor4d(Float32Array.from({ length: 4 * 12 * 12 * 3 }, (_, i) => Math.sin(i)), [4, 12, 12, 3])
      const f = tf.variable(tf.tensor4d(Float32Array.from({ length: 3 * 3 * 3 * 8 }, (_, i) => Math.cos(i) / 4), [3, 3, 3, 8]))
      const w = tf.variable(tf.tensor2d(Float32Array.from({ length: 8 * 5 * 5 * 10 }, (_, i) => Math.sin(3 * i) / 10), [200, 10]))
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(tf.matMul(tf.reshape(tf.maxPool(tf.relu(tf.conv2d(x, f, 1, 'valid')), 2, 2, 'valid'), [4, 200]), w))), [f, w])
      const out = [grads[f.name].dataSync() as Float32Array, grads[w.name].dataSync() as Float32Array]
      f.dispose()
      w.dispose()
      return out
    })
    await tf.setBackend('cpu')
    const expected = run()
    await tf.setBackend('wasm')
    assert.equal(wasmThreads(), 2)
    const actual = run()
    for (let k = 0; k < expected.length; k++) {
      const scale = Math.max(1, ...expected[k].map(Math.abs))
      for (let i = 0; i < expected[k].length; i++) assert.ok(Math.abs(actual[k][i] - expected[k][i]) <= 1e-5 * scale, `gradient ${k}[${i}]: ${actual[k][i]} vs ${expected[k][i]}`)
    }
    await assert.rejects(useWasmThreads(2), /already running/)
  })
})
