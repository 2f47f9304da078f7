/**
 * Allow-lists (`--allow FILE`): the peer ids that may connect, one per line; `#` starts a comment. The
 * connection gater refuses every other peer once its identity is proven (after the encryption handshake).
 *
 * @example
 * # the training cluster in room 4
 * 12D3KooWRm8J3iL796zPFi2EtGGtUJn58AG67gcqzMFHZnnsTzqD
 * 12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq   # gpu-2
 */
import { readFile, stat } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { MAX_ALLOW_LIST_BYTES, MAX_ALLOW_LIST_ENTRIES } from './constants.ts'
import { InvalidAllowListError } from './errors.ts'

/** The peer ids of an allow-list, in their canonical form; throws InvalidAllowListError naming the bad line. */
export function parseAllowList (text: string, source = 'allow-list'): Set<string> {
  if (Buffer.byteLength(text) > MAX_ALLOW_LIST_BYTES) throw new InvalidAllowListError(`${source}: larger than ${MAX_ALLOW_LIST_BYTES} bytes`)
  const ids = new Set<string>()
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    let id: string
    try {
      id = peerIdFromString(line).toString()
    } catch {
      throw new InvalidAllowListError(`${source}, line ${i + 1}: not a peer id: ${line.slice(0, 80)}`)
    }
    ids.add(id)
    if (ids.size > MAX_ALLOW_LIST_ENTRIES) throw new InvalidAllowListError(`${source}: more than ${MAX_ALLOW_LIST_ENTRIES} peer ids`)
  }
  return ids
}

export async function readAllowList (file: string): Promise<Set<string>> {
  let text: string
  try {
    const info = await stat(file)
    if (info.size > MAX_ALLOW_LIST_BYTES) throw new InvalidAllowListError(`${file}: larger than ${MAX_ALLOW_LIST_BYTES} bytes`)
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as Error).name === 'InvalidAllowListError') throw err
    throw new InvalidAllowListError(`cannot read ${file}: ${(err as Error).message}`)
  }
  return parseAllowList(text, file)
}
