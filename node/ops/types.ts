/**
 * What the operations routes answer, as JSON. Types only: the CLI and the
 * API client import them without loading the peer, TensorFlow.js or libp2p.
 */
import type { MemberStatus } from '../../protocols/status/index.ts'

export type { MemberStatus }

/** How a member's weights compare with the others' at the same round. */
export type Agreement =
  /** Same hash as the most common one among members at its round. */
  | 'agree'
  /** A different hash from the most common one at its round: this member's weights diverged. */
  | 'differs'
  /** No other member reported the same round (they moved on between answers): nothing to compare. */
  | 'alone'
  /** No hash to compare (not training yet, or unreachable). */
  | 'unknown'

export interface SwarmRow {
  peerId: string
  /** This row is the peer that gathered the view. */
  self: boolean
  /** The member answered over `/peer/status/1.0.0`. */
  reachable: boolean
  /** Why it did not (error name and message). */
  error: string | null
  status: MemberStatus | null
  agreement: Agreement
  /** Bytes per second this member sent to its successor in the last round it completed. */
  linkBytesPerSec: number | null
}

export interface SwarmView {
  /** When the view was gathered (ms since the epoch). */
  at: number
  /** The peer that gathered it. */
  peerId: string
  /** Every live member of the manifest (this peer included), sorted by peer id. */
  members: SwarmRow[]
  /** The ring order of the last round, as this peer saw it. */
  ring: string[]
  ms: number
}

export interface HistoryPoint {
  /** ms since the epoch */
  t: number
  step: number
  loss: number | null
  samplesPerSec: number
}

export interface EvaluationPoint {
  t: number
  step: number
  epoch: number
  accuracy: number
  loss: number
}

export interface History {
  training: HistoryPoint[]
  evaluations: EvaluationPoint[]
}

export interface Evaluation {
  rows: number
  loss: number
  accuracy: number
  /** Accuracy per class (label order), null for a class with no test rows. */
  perClass: Array<number | null>
  step: number
  round: number
  weightsHash: string
  ms: number
  /** A language model (gpt): the loss (nats per byte token) in bits per byte. */
  bitsPerByte?: number
}

/** `POST /generate`: a continuation sampled from the current gpt model. */
export interface GeneratedText {
  prompt: string
  /** The continuation alone. */
  text: string
  tokens: number
  temperature: number
  seed: number
  step: number
  weightsHash: string
  ms: number
}

/** The model as `peer export` writes it: model.json's content and the weights file (base64). */
export interface ExportedModel {
  /** model.json: topology, format, weights manifest pointing at `weightsFile`. */
  modelJson: Record<string, unknown>
  weightsFile: string
  /** The bytes of `weightsFile`, base64-encoded. */
  weightsBase64: string
  step: number
  round: number
  weightsHash: string
  /** Test accuracy of the last evaluation, if any (it may be older than `step`). */
  accuracy: number | null
  jobId: string
}
