/**
 * Multithreaded WebAssembly backend under Node: the package's threaded SIMD
 * build (XNNPACK on a pthreadpool of Web Workers), which
 * @tensorflow/tfjs-backend-wasm never picks under Node (its
 * WASM_HAS_MULTITHREAD_SUPPORT flag is false there, tfjs issue 3830).
 *
 * Why it did not start before, and what this does instead of the package's
 * init():
 * - the pthread worker script ships as a JS string (wasm-out/…worker.js
 *   exports `wasmWorkerContents`) that the package turns into a Blob URL,
 *   which Node's worker_threads cannot load: it is written to a file in the
 *   OS temp folder once per process (newlines re-escaped, as the package
 *   does before making its Blob), and `locateFile` points the workers at it;
 * - the workers load the main script by path (`mainScriptUrlOrBlob`), which
 *   their Node branch evaluates with `importScripts`;
 * - the C++ side caps its threads at half of `emscripten_num_logical_cores()`
 *   (it assumes two hyper-threads per core), computed once while the module
 *   starts from Node's `os.cpus()`: that answer is widened for the duration of
 *   the start so that the cap is the count asked for (at most 8: the size of
 *   the module's worker pool).
 * The backend object is the package's own `BackendWasm` on the threaded
 * module, registered under the name `wasm`, so every wasm kernel (the stock
 * ones and kernels.ts's) runs unchanged.
 *
 * Call `useWasmThreads(n)` before the wasm backend is first used
 * (`tf.setBackend('wasm')`). Threads pay off where a core is free: one peer
 * per machine. The default stays one thread (several peers per machine, as
 * in tests, would only contend).
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'

/** The threaded module's worker pool (PTHREAD_POOL_SIZE in the package's build): more threads cannot start. */
export const MAX_WASM_THREADS = 8

const require = createRequire(import.meta.url)

interface Module {
  cwrap: (name: string, ret: string | null, args: string[]) => (...a: number[]) => number
  tfjs?: Record<string, unknown>
}

let workerFile: string | null = null

/** The pthread worker script, written once per process. */
function workerScript (contents: string): string {
  if (workerFile === null) {
    const dir = mkdtempSync(join(tmpdir(), 'peer-tfjs-wasm-'))
    workerFile = join(dir, 'tfjs-backend-wasm-threaded-simd.worker.cjs')
    writeFileSync(workerFile, contents.replace(/\n/g, '\\n'))
  }
  return workerFile
}

/** Starts the threaded module with `threads` threads and wraps it the way the package's init() does. */
async function startModule (threads: number): Promise<Module> {
  const out = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out')
  const factory = require(join(out, 'tfjs-backend-wasm-threaded-simd.js')) as (config: Record<string, unknown>) => Promise<Module>
  const { wasmWorkerContents } = require(join(out, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string }
  const worker = workerScript(wasmWorkerContents)
  const os = require('node:os') as { cpus: () => unknown[] }
  const cpus = os.cpus
  os.cpus = () => {
    const real = cpus()
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length])
  }
  let module: Module
  try {
    module = await factory({
      locateFile: (path: string) => path.endsWith('.worker.js') ? worker : join(out, path),
      mainScriptUrlOrBlob: join(out, 'tfjs-backend-wasm-threaded-simd.js')
    })
  } finally {
    os.cpus = cpus
  }
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, [])
  }
  return module
}

/**
 * Makes the `wasm` backend the threaded build with `threads` threads (1 puts
 * nothing in place: the package's single-threaded SIMD build stays). Throws
 * RangeError for a count outside 1 … MAX_WASM_THREADS, and Error if the wasm
 * backend is already running.
 */
export async function useWasmThreads (threads: number): Promise<void> {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WASM_THREADS) {
    throw new RangeError(`wasm threads must be an integer from 1 to ${MAX_WASM_THREADS}, not ${threads}`)
  }
  const wasm = await import('@tensorflow/tfjs-backend-wasm')
  if (threads === 1) return
  const engine = tf.engine() as unknown as { registry: Record<string, unknown> }
  if (engine.registry.wasm !== undefined) throw new Error('useWasmThreads: the wasm backend is already running; call it before tf.setBackend(\'wasm\')')
  wasm.setThreadsCount(threads)
  tf.removeBackend('wasm')
  tf.registerBackend('wasm', async () => {
    const module = await startModule(threads)
    const backend = new wasm.BackendWasm(module as unknown as BackendWasm['wasm']) // starts the thread pool
    // the pool's workers wait for work forever: they must not keep the process alive
    const pthread = (module as unknown as { PThread: { runningWorkers: Array<{ unref: () => void }>, unusedWorkers: Array<{ unref: () => void }> } }).PThread
    for (const worker of [...pthread.runningWorkers, ...pthread.unusedWorkers]) worker.unref()
    return backend
  }, 2)
}

/** The threads the current wasm backend runs XNNPACK on (1 for the single-threaded build). */
export function wasmThreads (): number {
  const backend = tf.findBackend('wasm') as BackendWasm | null
  if (backend === null) return 0
  const tfjs = (backend.wasm as unknown as { tfjs: { getThreadsCount: () => number } }).tfjs
  return tfjs.getThreadsCount()
}
