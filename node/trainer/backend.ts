/**
 * Chooses TensorFlow.js's backend: the fastest that loads, or the one asked for.
 *
 * `auto` tries, best first: the native GPU build, the native CPU build, the
 * WebAssembly build (SIMD; ships its .wasm inside the package: the default on
 * machines where the native builds cannot install), and plain JavaScript.
 */
import { createRequire } from 'node:module'
import * as tf from '@tensorflow/tfjs'

import { BACKENDS, BACKEND_PACKAGES } from './backends.ts'
import { registerFastGradients, registerFastWasmKernels } from './kernels.ts'
import { useWasmThreads } from './wasm-threads.ts'
import type { BackendChoice, BackendName } from './backends.ts'

export { BACKENDS, BACKEND_PACKAGES, isBackendChoice } from './backends.ts'
export type { BackendChoice, BackendName } from './backends.ts'

/** The name each package registers with tfjs-core. */
const TF_NAMES: Record<BackendName, string> = {
  'tensorflow-gpu': 'tensorflow',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu'
}

export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError'
}

const require = createRequire(import.meta.url)

function installed (pkg: string): boolean {
  try {
    require.resolve(pkg)
    return true
  } catch {
    return false
  }
}

let selected: BackendName | undefined

/**
 * Threads for the wasm backend: PEER_WASM_THREADS (1 … 8), default 1. More
 * than one runs the package's threaded build (wasm-threads.ts): worth it
 * where a core would otherwise sit idle, one peer per machine.
 */
function wasmThreadsWanted (): number {
  const value = process.env.PEER_WASM_THREADS
  return value === undefined || value === '' ? 1 : Number(value)
}

/** Loads one backend and makes it current; throws BackendUnavailableError saying what to install. */
export async function loadBackend (name: BackendName): Promise<void> {
  const pkg = BACKEND_PACKAGES[name]
  if (!installed(pkg)) {
    throw new BackendUnavailableError(`backend "${name}" is not installed: run \`npm install ${pkg}\` (or use --backend auto)`)
  }
  try {
    if (name === 'wasm') await useWasmThreads(wasmThreadsWanted())
    if (name !== 'cpu') await import(pkg)
    if (name === 'wasm') registerFastWasmKernels() // stock autodiff without wasm's slow and missing kernels
    else registerFastGradients()
    const ok = await tf.setBackend(TF_NAMES[name])
    if (!ok) throw new Error(`tf.setBackend('${TF_NAMES[name]}') returned false`)
    await tf.ready()
  } catch (err) {
    throw new BackendUnavailableError(`backend "${name}" (${pkg}) is installed but failed to load: ${(err as Error).message}`)
  }
  selected = name
}

/**
 * Makes the requested backend current and returns its name. With `auto`, the
 * first of BACKENDS that loads; `cpu` always does.
 */
export async function selectBackend (choice: BackendChoice = 'auto', log?: (msg: string) => void): Promise<BackendName> {
  if (selected !== undefined && (choice === 'auto' || choice === selected)) return selected
  if (choice !== 'auto') {
    await loadBackend(choice)
    return choice
  }
  for (const name of BACKENDS) {
    try {
      await loadBackend(name)
      return name
    } catch (err) {
      log?.(`backend ${name} skipped: ${(err as Error).message}`)
    }
  }
  throw new BackendUnavailableError('no TensorFlow.js backend could be loaded')
}

/** The backend chosen by selectBackend, if any. */
export function currentBackend (): BackendName | undefined {
  return selected
}
