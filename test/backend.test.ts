import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import * as tf from '@tensorflow/tfjs'
import { BACKENDS, BACKEND_PACKAGES, isBackendChoice, loadBackendForTest } from './helpers/backend.ts'

const require = createRequire(import.meta.url)
const installed = (pkg: string): boolean => { try { require.resolve(pkg); return true } catch { return false } }

test('auto picks the best backend that loads, and makes it current', async () => {
  const chosen = await loadBackendForTest('auto')
  assert.ok((BACKENDS as readonly string[]).includes(chosen))
  const best = BACKENDS.find(b => installed(BACKEND_PACKAGES[b]))
  // the best installed one wins unless it failed to load (then a later one does)
  assert.ok(BACKENDS.indexOf(chosen) >= BACKENDS.indexOf(best!))
  assert.equal(tf.getBackend(), chosen === 'tensorflow-gpu' ? 'tensorflow' : chosen)
})

test('a backend that is not installed is a clear error naming its package', async (t) => {
  const missing = BACKENDS.filter(b => !installed(BACKEND_PACKAGES[b]))
  if (missing.length === 0) { t.skip('every backend is installed here'); return }
  for (const name of missing) {
    await assert.rejects(loadBackendForTest(name), (err: Error) => {
      assert.equal(err.name, 'BackendUnavailableError')
      assert.ok(err.message.includes(BACKEND_PACKAGES[name]), err.message)
      return true
    })
  }
})

test('backend names are validated', () => {
  assert.ok(isBackendChoice('auto'))
  assert.ok(isBackendChoice('wasm'))
  assert.ok(!isBackendChoice('webgpu'))
})
