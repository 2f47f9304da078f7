/** Several length-prefixed request/response frames over one libp2p stream, with bounded frame sizes (protocols/common/framing.ts). */
export { framed } from '../../protocols/common/index.ts'
export type { Framed } from '../../protocols/common/index.ts'
