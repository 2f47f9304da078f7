/**
 * Where training stands and what an evaluation found: what the trainer keeps
 * and a checkpoint stores (a leaf, so that trainer.ts and checkpoint.ts need
 * not import each other).
 */

/** Where training stands; a checkpoint stores exactly this plus the tensors. */
export interface Progress {
  /** Optimizer steps applied since the job began. */
  step: number
  /** Rounds (synchronizations with the swarm) completed since the job began. */
  round: number
  /** Samples whose updates were applied since the job began (swarm-wide, once the swarm reduces). */
  samples: number
  /** H > 1: local steps and samples since the last averaging. */
  sinceSyncSteps?: number
  sinceSyncSamples?: number
  /** The group (epoch, members) of the last round: a restarted or synced peer counts its quorum against it. */
  group?: { epoch: number, members: string[] }
}

export interface Evaluation {
  epoch: number
  step: number
  loss: number
  accuracy: number
}
