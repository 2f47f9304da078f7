export class InvalidJobError extends Error {
  override name = 'InvalidJobError'
  /** The offending field, dotted (`hidden.0`), or `(job)` for the whole document. */
  readonly field: string
  constructor (message: string, field: string) {
    super(message)
    this.field = field
  }
}
