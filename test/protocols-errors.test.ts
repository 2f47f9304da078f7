/**
 * The shared protocol errors are defined once (protocols/common): every protocol's export is that class, so
 * `instanceof` and `err.name` mean the same whichever protocol an importer took it from; `kind` defaults to
 * `malformed`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as common from '../protocols/common/index.ts'
import * as allreduce from '../protocols/allreduce/index.ts'
import * as manifest from '../protocols/manifest/index.ts'
import * as model from '../protocols/model/index.ts'
import * as ringKey from '../protocols/ring-key/index.ts'
import * as rounds from '../protocols/rounds/index.ts'
import * as shard from '../protocols/shard/index.ts'
import * as stateSync from '../protocols/state-sync/index.ts'
import * as status from '../protocols/status/index.ts'

test('InvalidMessageError, TimeoutError and NotStartedError are one class each, re-exported by every protocol', () => {
  for (const p of [allreduce, manifest, model, ringKey, rounds, shard, stateSync, status]) assert.equal(p.InvalidMessageError, common.InvalidMessageError)
  for (const p of [allreduce, model, shard, status]) assert.equal(p.TimeoutError, common.TimeoutError)
  for (const p of [allreduce, model, shard]) assert.equal(p.NotStartedError, common.NotStartedError)
  // one frame decoder: the protocols that give it a default limit subclass the shared one
  for (const p of [allreduce, shard]) assert.ok(new p.FrameDecoder() instanceof common.FrameDecoder)

  const invalid = new manifest.InvalidMessageError('bad delta')
  assert.ok(invalid instanceof allreduce.InvalidMessageError && invalid instanceof Error)
  assert.equal(invalid.name, 'InvalidMessageError')
  assert.equal(invalid.kind, 'malformed')
  assert.equal(invalid.message, 'bad delta')
  assert.equal(new shard.InvalidMessageError('cut', 'truncated').kind, 'truncated')
  assert.match(String(new shard.InvalidMessageError('big', 'too-large')), /^InvalidMessageError: big$/)
  assert.equal(new status.TimeoutError('slow').name, 'TimeoutError')
  assert.equal(new allreduce.NotStartedError('stopped').name, 'NotStartedError')
})
