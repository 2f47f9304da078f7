/**
 * Training loss and test accuracy over time, kept in memory for the
 * dashboard's curves. Loss is sampled on a timer (it is a smoothed figure,
 * so a couple of samples a second show its shape); evaluations are recorded as they
 * happen. When full, every other old sample is dropped, so a long run keeps
 * its whole shape at a coarser grain.
 */
import type { EvaluationPoint, History, HistoryPoint } from './types.ts'

/** Samples kept per series: the newest half at full grain (two a second: about 4 minutes), older ones ever coarser. */
export const MAX_POINTS = 1000

export class TrainingHistory {
  private readonly training: HistoryPoint[] = []
  private readonly evaluations: EvaluationPoint[] = []
  private readonly max: number

  constructor (max = MAX_POINTS) {
    this.max = max
  }

  /** Records a loss sample; a sample at the step of the previous one replaces nothing and is skipped. */
  sample (point: HistoryPoint): void {
    const last = this.training[this.training.length - 1]
    if (last !== undefined && last.step === point.step) return
    this.training.push(point)
    thin(this.training, this.max)
  }

  evaluation (point: EvaluationPoint): void {
    const last = this.evaluations[this.evaluations.length - 1]
    if (last !== undefined && last.step === point.step && last.accuracy === point.accuracy) return
    this.evaluations.push(point)
    thin(this.evaluations, this.max)
  }

  snapshot (): History {
    return { training: this.training.slice(), evaluations: this.evaluations.slice() }
  }
}

/** Halves the older half of a full series (keeps the newest points at full grain). */
function thin<T> (points: T[], max: number): void {
  if (points.length <= max) return
  const half = Math.floor(points.length / 2)
  const kept = points.slice(0, half).filter((_, i) => i % 2 === 0)
  points.splice(0, half, ...kept)
}
