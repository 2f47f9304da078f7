/**
 * Process helpers shared by folders that must not import each other (the
 * peer's data dir and the data importer both tell live owners from stale ones).
 */

/** True if a process with this pid exists (it may belong to someone else: callers confirm over HTTP). */
export function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
