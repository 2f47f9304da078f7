export class NoPeerRunningError extends Error {
  override name = 'NoPeerRunningError'
}

export class ApiRequestError extends Error {
  override name = 'ApiRequestError'
  readonly status: number
  constructor (message: string, status: number) {
    super(message)
    this.status = status
  }
}
