/** Defaults of `peer start`'s networking options (light: the CLI reads them without loading the peer). */
import { DEFAULT_HEARTBEAT_MS, DEFAULT_MEMBER_TIMEOUT_MS } from '../manifest/constants.ts'

export const PEER_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/4001'],
  join: [] as string[],
  mdns: true,
  heartbeatMs: DEFAULT_HEARTBEAT_MS,
  memberTimeoutMs: DEFAULT_MEMBER_TIMEOUT_MS,
  joinTimeoutMs: 30_000
}
