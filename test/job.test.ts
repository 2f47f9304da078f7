import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { InvalidJobError, MAX_JOB_BYTES, canonicalJson, jobId, parseJob, parseJobJson } from '../protocols/job/index.ts'

test('an empty job is the default MNIST MLP', () => {
  const job = parseJob({})
  assert.equal(job.dataset, 'mnist')
  assert.equal(job.model, 'mlp')
  assert.ok(job.batchSize > 0 && job.epochs > 0)
})

test('an invalid job names the bad field', () => {
  const cases: Array<[unknown, string]> = [
    [{ batchSize: 0 }, 'batchSize'],
    [{ batchSize: 1.5 }, 'batchSize'],
    [{ dataset: 'imagenet' }, 'dataset'],
    [{ model: 'transformer' }, 'model'],
    [{ learningRate: -1 }, 'learningRate'],
    [{ hidden: [128, 0] }, 'hidden.1'],
    [{ optimizer: 'lion' }, 'optimizer'],
    [{ epochs: 'ten' }, 'epochs'],
    [{ bogus: 1 }, '(job)']
  ]
  for (const [input, field] of cases) {
    assert.throws(() => parseJob(input), (err: Error) => {
      assert.equal(err.name, 'InvalidJobError')
      assert.equal((err as InvalidJobError).field, field, `field for ${JSON.stringify(input)}`)
      assert.match(err.message, new RegExp(field.replace(/[.()]/g, '\\$&')))
      return true
    })
  }
})

test('job JSON: not JSON, too large, not an object', () => {
  assert.throws(() => parseJobJson('{'), { name: 'InvalidJobError', message: /not JSON/ })
  assert.throws(() => parseJobJson(' '.repeat(MAX_JOB_BYTES + 1)), { name: 'InvalidJobError', message: /larger than/ })
  assert.throws(() => parseJobJson('[1,2]'), { name: 'InvalidJobError' })
})

test('the job id depends on content only, not on key order', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1024 }), fc.integer({ min: 0, max: 1000 }), (batchSize, seed) => {
    const a = parseJob({ batchSize, seed, model: 'mlp' })
    const b = parseJob(JSON.parse(JSON.stringify({ model: 'mlp', seed, batchSize })))
    assert.equal(jobId(a), jobId(b))
    assert.notEqual(jobId(a), jobId(parseJob({ batchSize, seed: seed + 1, model: 'mlp' })))
  }))
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}')
})
