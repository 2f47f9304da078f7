/** The tensor backends, best first, and the package each needs (light: no TensorFlow.js import). */
export const BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const
export type BackendName = typeof BACKENDS[number]
export type BackendChoice = BackendName | 'auto'

/** The npm package that provides each backend. */
export const BACKEND_PACKAGES: Record<BackendName, string> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs'
}

export function isBackendChoice (value: string): value is BackendChoice {
  return value === 'auto' || (BACKENDS as readonly string[]).includes(value)
}
