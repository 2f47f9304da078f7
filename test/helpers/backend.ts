import { BACKENDS, BACKEND_PACKAGES, isBackendChoice, loadBackend, selectBackend } from '../../node/trainer/backend.ts'
import type { BackendChoice, BackendName } from '../../node/trainer/backend.ts'

export { BACKENDS, BACKEND_PACKAGES, isBackendChoice }

/** selectBackend without its process-wide memo, so each test sees a real load. */
export async function loadBackendForTest (choice: BackendChoice): Promise<BackendName> {
  if (choice !== 'auto') {
    await loadBackend(choice)
    return choice
  }
  return await selectBackend('auto')
}
