import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { addCheckedFrom, copyChecked } from '../node/ring/exchange.ts'
import { divideFloats, scaleFloats, simdFloats, simdKernelsOf } from '../node/common/simd-floats.ts'
import { sumBuffer } from '../node/ring/index.ts'
import { MAX_BLOCK_BYTES } from '../protocols/allreduce/index.ts'

/** Floats of every magnitude and sign, subnormals and zeros of both signs included. */
function randomFloats (n: number, seed: number): Float32Array {
  let s = seed >>> 0
  const next = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s }
  const bits = new Uint32Array(n)
  for (let k = 0; k < n; k++) {
    // a random sign and mantissa, an exponent that stays finite (0 … 253: subnormals to 2^126)
    bits[k] = (next() & 0x807fffff) | ((next() % 254) << 23)
  }
  return new Float32Array(bits.buffer)
}

/** `values` as a block's payload: little-endian bytes at a byte offset `shift` into a larger buffer (unaligned for shift % 4 ≠ 0). */
function payloadOf (values: Float32Array, shift: number): Uint8Array {
  const bytes = new Uint8Array(values.byteLength + shift + 3)
  bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), shift)
  return bytes.subarray(shift, shift + values.byteLength)
}

const bitsOf = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length))

describe('the ring\'s SIMD adds and copies (sum buffers)', () => {
  test('a sum buffer is zeroed, of the length asked, and only the whole buffer has kernels', () => {
    const sum = sumBuffer(1001)
    assert.equal(sum.length, 1001)
    assert.ok(sum.every(v => v === 0))
    assert.notEqual(simdKernelsOf(sum), null)
    assert.equal(simdKernelsOf(sum.subarray(1)), null, 'a view of part of it')
    assert.equal(simdKernelsOf(new Float32Array(1001)), null, 'a plain array')
  })

  test('add and copy give the JavaScript loops\' bits, at every offset and length (tails and unaligned payloads included)', () => {
    const length = 4099
    const base = randomFloats(length, 1)
    for (const [at, n] of [[0, 0], [0, 1], [0, 3], [0, 4], [1, 7], [3, 16], [5, 1023], [2, 4096], [0, length], [length - 5, 5]]) {
      for (const shift of [0, 1, 2, 3]) {
        const block = randomFloats(n, at * 31 + n + shift)
        const payload = payloadOf(block, shift)
        const simd = sumBuffer(length)
        const kernels = simdKernelsOf(simd)
        assert.ok(kernels !== null)
        const plain = new Float32Array(length)
        assert.equal(kernels.addFrom(at, base, payload), addCheckedFrom(plain, base, at, block))
        assert.deepEqual(bitsOf(simd), bitsOf(plain), `add at ${at}, ${n} floats, payload offset ${shift}`)
        const other = randomFloats(n, n + 7)
        assert.equal(kernels.copy(at, payloadOf(other, shift)), copyChecked(plain, at, other))
        assert.deepEqual(bitsOf(simd), bitsOf(plain), `copy at ${at}, ${n} floats, payload offset ${shift}`)
      }
    }
  })

  test('a block as large as a block may be fits the staging area', () => {
    const n = MAX_BLOCK_BYTES / 4
    const base = randomFloats(n, 3)
    const block = randomFloats(n, 4)
    const simd = sumBuffer(n)
    const plain = new Float32Array(n)
    assert.equal(simdKernelsOf(simd)?.addFrom(0, base, payloadOf(block, 0)), -1)
    addCheckedFrom(plain, base, 0, block)
    assert.deepEqual(bitsOf(simd), bitsOf(plain))
  })

  test('the first NaN or ±Inf of a block is found, in the SIMD body and in the tail', () => {
    const length = 203
    const n = 103 // 100 floats in 4-lanes, 3 in the tail
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const where of [0, 1, 50, 99, 100, 102]) {
        const block = randomFloats(n, where)
        block[where] = bad
        if (where + 2 < n) block[where + 2] = NaN // a later one is not the first
        const kernels = simdKernelsOf(sumBuffer(length))
        assert.ok(kernels !== null)
        assert.equal(kernels.addFrom(17, randomFloats(length, 9), payloadOf(block, where % 4)), where, `add: ${bad} at ${where}`)
        assert.equal(kernels.copy(17, payloadOf(block, (where + 1) % 4)), where, `copy: ${bad} at ${where}`)
      }
    }
  })
})

describe('the trainer\'s SIMD scaling (flattenUpdate, unflattenUpdate)', () => {
  test('times and divided by a float32, in place, give the JavaScript loops\' bits (tails, ranges, plain arrays)', () => {
    const length = 1031
    const values = randomFloats(length, 11)
    for (const f of [64, 3, 1e-3, 7.000001, 1e30]) {
      for (const [from, to] of [[0, length], [0, 3], [1, 8], [5, 5], [2, 1029]]) {
        const simd = simdFloats(length)
        assert.notEqual(simdKernelsOf(simd), null)
        const plain = new Float32Array(length)
        const expected = values.slice()
        for (let k = from; k < to; k++) expected[k] = values[k] * Math.fround(f)
        simd.set(values)
        plain.set(values)
        scaleFloats(simd, from, to, f)
        scaleFloats(plain, from, to, f)
        assert.deepEqual(bitsOf(simd), bitsOf(expected), `times ${f} over ${from}…${to}`)
        assert.deepEqual(bitsOf(plain), bitsOf(expected), `times ${f} over ${from}…${to}, a plain array`)
        for (let k = from; k < to; k++) expected[k] = values[k] / Math.fround(f)
        simd.set(values)
        plain.set(values)
        divideFloats(simd, from, to, f)
        divideFloats(plain, from, to, f)
        assert.deepEqual(bitsOf(simd), bitsOf(expected), `divided by ${f} over ${from}…${to}`)
        assert.deepEqual(bitsOf(plain), bitsOf(expected), `divided by ${f} over ${from}…${to}, a plain array`)
      }
    }
  })

  test('an array without staging refuses a block to add, and names the sizes', () => {
    const k = simdKernelsOf(simdFloats(16))
    assert.ok(k !== null)
    assert.throws(() => k.addFrom(0, new Float32Array(16), new Uint8Array(16)), /a block of 16 bytes, staging for 0/)
  })
})
