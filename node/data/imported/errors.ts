/**
 * Failures of reading, importing and loading data sets, one class per
 * failure, each with its `name` set so callers test `err.name`.
 */

/** Where in an input file something is wrong: 1-based line and column (a column number or a column name). */
export interface InputPosition {
  file: string
  line: number
  column: number | string
}

/**
 * Bad input: the message reads `file:line:column: what is wrong`, as
 * compilers print it. `column` is a 1-based character (or field) number, or
 * the column's name where that says more.
 */
export class DataInputError extends Error {
  override name = 'DataInputError'
  readonly file: string
  readonly line: number
  readonly column: number | string

  constructor (at: InputPosition, what: string) {
    super(`${at.file}:${at.line}:${at.column}: ${what}`)
    this.file = at.file
    this.line = at.line
    this.column = at.column
  }
}

/** The label (or a --text, --ignore) column is not in the header. */
export class MissingColumnError extends DataInputError {
  override name = 'MissingColumnError'
}

/** The file holds no rows (nothing at all, or only a header). */
export class EmptyInputError extends DataInputError {
  override name = 'EmptyInputError'
}

/** A row with more or fewer fields than the header. */
export class RaggedRowError extends DataInputError {
  override name = 'RaggedRowError'
}

/** Bytes that are not UTF-8. */
export class EncodingError extends DataInputError {
  override name = 'EncodingError'
}

/** Malformed CSV (an unclosed quote, a quote inside an unquoted field) or a JSON-lines line that is not a flat object. */
export class MalformedInputError extends DataInputError {
  override name = 'MalformedInputError'
}

/** Input that parses but cannot make a data set: one class only, too many classes, no rows left after cleaning. */
export class UnusableInputError extends DataInputError {
  override name = 'UnusableInputError'
}

/** A data set directory whose description or shards do not match their hashes, or are not there. */
export class CorruptDatasetError extends Error {
  override name = 'CorruptDatasetError'
}

/** No data set with this id in the data dir. */
export class DatasetNotFoundError extends Error {
  override name = 'DatasetNotFoundError'
}

/** A data set whose description is here but some of whose shards are not (yet): fetch them first. */
export class IncompleteDatasetError extends Error {
  override name = 'IncompleteDatasetError'
  readonly missing: string[]
  constructor (message: string, missing: string[]) {
    super(message)
    this.missing = missing
  }
}

/** A data set too large to hold as a dense feature matrix in memory. */
export class DatasetTooLargeError extends Error {
  override name = 'DatasetTooLargeError'
}

/** Swarm-wide statistics whose per-shard slots were not each filled exactly once, or overflowed. */
export class StatsCoverageError extends Error {
  override name = 'StatsCoverageError'
}
