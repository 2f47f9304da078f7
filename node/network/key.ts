import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

export const KEY_FILE = 'peer.key'

/** The peer's identity: read from the data dir, or made and saved there (mode 0600) on first start. */
export async function loadOrCreateKey (dataDir: string): Promise<PrivateKey> {
  const file = join(dataDir, KEY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    try {
      // (cast: @libp2p/crypto's types resolve a second copy of @libp2p/interface; the objects are the same)
      return privateKeyFromProtobuf(bytes) as unknown as PrivateKey
    } catch (err) {
      throw new Error(`data dir ${dataDir}: ${KEY_FILE} is not a valid private key (${(err as Error).message})`)
    }
  }
  const key = await generateKeyPair('Ed25519') as unknown as PrivateKey
  await writeFile(file, privateKeyToProtobuf(key as never), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
  return key
}
