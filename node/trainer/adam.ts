/**
 * tf.js's Adam step without its 15 tensor ops per variable: on the wasm backend one WebAssembly SIMD loop per
 * variable in place on the heap (simd-adam.ts), elsewhere a scalar loop. The same float32 arithmetic in the same
 * order (every product, sum, quotient and square root rounded to float32, as f32x4 and `Math.fround` round
 * it), so the weights and moments are bit for bit those of `AdamOptimizer.applyGradients` (test/adam.test.ts),
 * checkpoints keep their format (the optimizer's own moments, `getWeights`, `setWeights`), and a swarm may mix
 * peers that use either.
 *
 * On the default model (101,770 parameters), one core: 0.17-0.28 ms a step instead of tf.js's 1.2-1.9 ms, and
 * about half less of what a step allocates on V8's heap (each op's tensors, scopes and kernel records), which
 * drove a full collection about every second that the other members of a ring waited out.
 */
import * as tf from '@tensorflow/tfjs-core'
import { computeFloats } from './kernels.ts'
import { simdAdam } from './simd-adam.ts'

interface AdamInternals {
  learningRate: number
  beta1: number
  beta2: number
  epsilon: number
  accBeta1: tf.Variable
  accBeta2: tf.Variable
  accumulatedFirstMoment: Array<{ originalName: string, variable: tf.Variable }>
  accumulatedSecondMoment: Array<{ originalName: string, variable: tf.Variable }>
  iterations_: number
}

/**
 * Whether adamStep takes this optimizer's steps: tf.js's Adam on the wasm or cpu backend (on a GPU backend the
 * values live on the GPU, where tf.js's own ops stay).
 */
export function usesAdamStep (optimizer: tf.Optimizer): optimizer is tf.AdamOptimizer {
  // by class name: tf.js's optimizers answer `instanceof` for any optimizer class (Symbol.hasInstance checks
  // only for minimize, computeGradients and applyGradients), so an SGD optimizer "is" an AdamOptimizer
  return optimizer.getClassName() === 'Adam' && (tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu')
}

/**
 * One Adam step: `variables[i] -= lr · m̂ᵢ / (√v̂ᵢ + ε)` with the moments updated from `grads[i]`, exactly as
 * `optimizer.applyGradients` would (its moments, β powers and iteration count move as they would there).
 */
export function adamStep (optimizer: tf.AdamOptimizer, variables: tf.Variable[], grads: tf.Tensor[]): void {
  const adam = optimizer as unknown as AdamInternals
  const f = Math.fround
  const b1 = f(adam.beta1)
  const b2 = f(adam.beta2)
  const c1 = f(1 - adam.beta1)
  const c2 = f(1 - adam.beta2)
  const eps = f(adam.epsilon)
  const negLr = f(-adam.learningRate)
  const acc1 = adam.accBeta1.dataSync()[0]
  const acc2 = adam.accBeta2.dataSync()[0]
  const o1 = f(1 - acc1)
  const o2 = f(1 - acc2)
  variables.forEach((value, i) => {
    const g = grads[i]
    if (value.dtype !== 'float32' || g.dtype !== 'float32') throw new TypeError(`adamStep: ${value.name} is ${value.dtype}, its gradient ${g.dtype}: float32 only`)
    adam.accumulatedFirstMoment[i] ??= { originalName: `${value.name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) }
    adam.accumulatedSecondMoment[i] ??= { originalName: `${value.name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) }
    const m = adam.accumulatedFirstMoment[i].variable
    const v = adam.accumulatedSecondMoment[i].variable
    const [nm, nv, nw] = computeFloats([value.shape, value.shape, value.shape], [m, v, value, g], ([mo, vo, wo], [mi, vi, wi, gi], places) => {
      // 4 at a time in place on the wasm heap where it can; the rest (or everything) in the scalar loop
      const vectors = places === null ? 0 : wi.length >> 2
      if (places !== null && vectors > 0) simdAdam(places.memory, [...places.outs, ...places.ins], vectors, [b1, b2, c1, c2, o1, o2, eps, negLr])
      adamLoop(vectors * 4, mo, vo, wo, mi, vi, wi, gi, b1, b2, c1, c2, o1, o2, eps, negLr)
    })
    m.assign(nm)
    v.assign(nv)
    value.assign(nw)
    nm.dispose()
    nv.dispose()
    nw.dispose()
  })
  const p1 = tf.scalar(f(acc1 * b1))
  const p2 = tf.scalar(f(acc2 * b2))
  adam.accBeta1.assign(p1)
  adam.accBeta2.assign(p2)
  p1.dispose()
  p2.dispose()
  adam.iterations_ = (adam.iterations_ ?? 0) + 1
}

/** The step over one variable's values from `from` on, every operation rounded to float32 as tf.js's float32 kernels round it. */
function adamLoop (from: number, mo: Float32Array, vo: Float32Array, wo: Float32Array, mi: Float32Array, vi: Float32Array, wi: Float32Array, gi: Float32Array,
  b1: number, b2: number, c1: number, c2: number, o1: number, o2: number, eps: number, negLr: number): void {
  const f = Math.fround
  const n = wi.length
  for (let k = from; k < n; k++) {
    const gk = gi[k]
    const mk = f(f(mi[k] * b1) + f(gk * c1))
    const vk = f(f(vi[k] * b2) + f(f(gk * gk) * c2))
    mo[k] = mk
    vo[k] = vk
    wo[k] = f(f(f(f(mk / o1) / f(f(Math.sqrt(f(vk / o2))) + eps)) * negLr) + wi[k])
  }
}
