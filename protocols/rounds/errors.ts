export { InvalidMessageError } from '../common/index.ts'
