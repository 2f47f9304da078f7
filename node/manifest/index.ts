/**
 * The replicated manifest: the job, the data set's shards, claims with
 * leases renewed by heartbeat, and members. A last-writer-wins CRDT over
 * hybrid logical clocks, persisted in LevelDB, gossiped as deltas, reconciled
 * in full with every newly connected peer.
 *
 * Where this folder sits among the others: docs/architecture.md.
 *
 * @example
 * const manifest = new Manifest({ network, store, logger })
 * await manifest.start()                                  // reads the replica back, answers syncs
 * await manifest.createJob(job, shards); manifest.attachJob(jobId)
 * manifest.mine() // ['s0003', 's0011', …]
 */
export { Manifest } from './manifest.ts'
export { DEFAULT_HEARTBEAT_MS, DEFAULT_MEMBER_TIMEOUT_MS } from './constants.ts'
export type { ManifestComponents, ManifestCounters, ManifestEvents, ManifestInit, ManifestStore } from './manifest.ts'
export { LwwMap, lww } from './crdt.ts'
export type { Entry } from './crdt.ts'
export { HlcClock, compareHlc } from './hlc.ts'
export type { Hlc } from './hlc.ts'
export { planClaims, targetShare, unownedShards } from './claims.ts'
