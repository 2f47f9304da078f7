/**
 * The local trainer: backend choice, model, batches, optimizer, checkpoints.
 *
 * `createTrainerLogic(trainer, checkpoints)` gives the trainer machine with its
 * work wired to a Trainer; the root actor invokes it.
 *
 * Where this folder sits among the others: docs/architecture.md.
 */
import { fromPromise } from 'xstate'
import { trainerMachine } from './machine.ts'
import type { StepReport } from './machine.ts'
import { Trainer } from './trainer.ts'
import type { Evaluation, Update } from './trainer.ts'
import { CheckpointStore } from './checkpoint.ts'

export { Trainer, createOptimizer, createPresetNet } from './trainer.ts'
export { ComputeWorker, ComputeWorkerError } from './compute.ts'
export type { ComputeInit } from './compute.ts'
export type { DataStatus, Evaluation, Progress, TrainerInit, Update } from './trainer.ts'
export { CheckpointStore, decodeCheckpoint, encodeCheckpoint } from './checkpoint.ts'
export type { BinaryStore, Checkpoint } from './checkpoint.ts'
export { trainerMachine } from './machine.ts'
export type { StepReport, TrainerOutput } from './machine.ts'
export { BACKENDS, BACKEND_PACKAGES, BackendUnavailableError, currentBackend, isBackendChoice, selectBackend } from './backend.ts'
export type { BackendChoice, BackendName } from './backend.ts'
export { CheckpointMismatchError, CorruptCheckpointError } from './errors.ts'
export { InvalidModelError, checkLayersModel, createLayersNet, inspectTopology } from './layers-net.ts'
export type { LayersModelSource, TopologyInfo } from './layers-net.ts'

export interface TrainerHooks {
  /**
   * Sums this peer's update vector (gradients with H = 1, the parameter delta with H > 1, each times its sample
   * count, then the count: `Trainer.flattenUpdate`, `Trainer.deltaVector`) with the swarm's; alone, the
   * identity. Null when the round went ahead without this peer, or this peer may not advance (no quorum).
   * The sum is the trainer's until the next call: it is averaged in place (no model-sized copy).
   * `signal` fires when the trainer machine is stopped: the wait for the round ends (the result is not used).
   */
  allReduce?: (vector: Float32Array, samples: number, signal: AbortSignal) => Promise<Float32Array | null>
  /** Brings a peer that fell behind to the swarm's state; `signal` as for allReduce. */
  resync?: (signal: AbortSignal) => Promise<void>
  onEvaluation?: (evaluation: Evaluation) => void
  /**
   * This peer's place in the group of the last round, `index` of `count` members: an evaluation is then split
   * between them (Trainer.evaluatePart) and summed in the next round. Null (or absent): this peer evaluates
   * every test row itself.
   */
  evaluationShard?: () => { index: number, count: number } | null
  onCheckpoint?: (step: number) => void
}

function report (trainer: Trainer): StepReport {
  return {
    step: trainer.progress.step,
    epoch: trainer.epoch,
    epochEnded: trainer.atEpochBoundary,
    finished: trainer.finished,
    syncDue: trainer.syncDue
  }
}

/**
 * The trainer machine, its work done by the Trainer `getTrainer` returns when it starts, its checkpoints kept in
 * `checkpoints`. This code only moves the update and its vectors between the Trainer and the hooks: converting
 * tensors to vectors and back, and disposing tensors, is the Trainer's (see `Update`).
 */
export function createTrainerLogic (getTrainer: () => Trainer, checkpoints: CheckpointStore, hooks: TrainerHooks = {}) {
  let update: Update | null = null
  /** Samples of this peer's own batch in `update` (after a reduction `update.samples` is the swarm's). */
  let localSamples = 0
  return trainerMachine.provide({
    actors: {
      prepare: fromPromise<StepReport, void>(async () => ({ ...report(getTrainer()), syncEvery: getTrainer().job.syncEvery })),
      compute: fromPromise(async () => {
        const t = performance.now()
        update = await getTrainer().computeUpdate()
        localSamples = update.samples
        getTrainer().timing.record('compute', performance.now() - t)
      }),
      reduceGradients: fromPromise(async ({ signal }) => {
        if (update === null || hooks.allReduce === undefined) return { resync: false }
        const trainer = getTrainer()
        const { loss, samples } = update
        // the update's tensors end here (flattenUpdate disposes them): from now on the step is vectors
        const vector = trainer.flattenUpdate(update)
        update = null
        const t = performance.now()
        const sum = await hooks.allReduce(vector, samples, signal)
        trainer.timing.record('reduce', performance.now() - t)
        // an evaluation part in this round: the swarm's evaluation (or this peer's own, where the sum lacks rows)
        const evaluation = await trainer.settleEvaluation(sum)
        if (evaluation !== null) hooks.onEvaluation?.(evaluation)
        if (sum === null) {
          trainer.roundMissed()
          return { resync: true }
        }
        // the sum is the rounds' (refilled next round, after this update is applied): averaged in place
        update = trainer.unflattenUpdate(sum, loss, true)
        localSamples = samples
        return { resync: false }
      }),
      averageDeltas: fromPromise<{ resync: boolean, report?: StepReport }, void>(async ({ signal }) => {
        const trainer = getTrainer()
        const vector = trainer.deltaVector()
        const t = performance.now()
        const sum = hooks.allReduce !== undefined ? await hooks.allReduce(vector, trainer.progress.sinceSyncSamples ?? 0, signal) : vector
        trainer.timing.record('reduce', performance.now() - t)
        if (sum === null) {
          trainer.roundMissed()
          return { resync: true }
        }
        trainer.applyOuter(sum)
        return { resync: false, report: report(trainer) }
      }),
      resync: fromPromise(async ({ signal }) => {
        await hooks.resync?.(signal)
        return report(getTrainer())
      }),
      apply: fromPromise(async () => {
        if (update === null) throw new Error('no update to apply')
        const t = performance.now()
        // the reduced update counts the swarm's samples; the data position moves past this peer's own batch
        getTrainer().applyUpdate(update, localSamples)
        getTrainer().timing.record('apply', performance.now() - t)
        update = null
        return report(getTrainer())
      }),
      evaluate: fromPromise(async () => {
        const trainer = getTrainer()
        // a swarm splits the test rows between its members (not the final evaluation: no round follows it)
        const shard = trainer.shardsEvaluation && !trainer.finished ? hooks.evaluationShard?.() ?? null : null
        if (shard !== null && shard.count > 1) {
          await trainer.evaluatePart(shard.index, shard.count)
          return
        }
        const evaluation = await trainer.evaluate()
        hooks.onEvaluation?.(evaluation)
      }),
      checkpoint: fromPromise(async () => {
        const trainer = getTrainer()
        await checkpoints.save(await trainer.capture())
        hooks.onCheckpoint?.(trainer.progress.step)
      })
    }
  })
}
