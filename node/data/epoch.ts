/**
 * The swarm's data position: which rows of the current data epoch the swarm
 * has trained, agreed in every round as the weights are, so that every row of
 * the data set is trained exactly once per epoch by the swarm as a whole,
 * also while shards change owner or members come and go.
 *
 * The rows are cut into blocks (contiguous rows inside one shard, as the
 * streaming reader reads them). Each block has a seeded order of its rows for
 * the epoch, and the swarm agrees on one number per block: how many of them
 * it has trained (`taken`). So the rows a block has left are the rest of its
 * order, and any member can carry on a block another member began.
 *
 * A round carries, beside the update, `slots` numbers from every member,
 * summed by the all-reduce like the gradients (small integers: the float32
 * sum is exact):
 *
 *   [ rows taken from each block | 1 for each shard it claims | 1 ]
 *
 * A member reads a shard's rows only in the rounds after one in which it was
 * the shard's only claimant: two members that both think they own a shard
 * (the manifest's claims are settling) both stop reading it until one lets it
 * go, so no row is ever read by two. A round that fails adds nothing, and
 * the rows of its batches are read again. Members draw batches in proportion
 * to the rows their shards have left, so that the group ends an epoch
 * together; the epoch ends when every block is taken whole.
 */
import { mixSeed, permutation, seededRandom } from './random.ts'
import { blocksOf } from './stream/order.ts'
import type { Block } from './stream/order.ts'
import { RowSet } from './stream/rows.ts'

/** A member draws at most this many times the job's batch in one step (one holding most of the rows left). */
const MAX_BATCH_FACTOR = 4

export interface DataEpochInit {
  /** Each shard's row count, in index order (the training rows are the shards' rows back to back). */
  shardRows: readonly number[]
  /** Rows per block (a block never spans two shards). */
  blockRows: number
  seed: number
  /** Blocks a member draws a batch from at once (the reader holds these): its window. */
  windowBlocks: number
  /**
   * True (default): other members read the same data set, so a shard is read only in the rounds after one that
   * found this member its only claimant. False: this member alone reads the data set, its shards at once.
   */
  shared?: boolean
}

export class DataEpoch {
  readonly blocks: readonly Block[]
  /** Each shard's first row, then the row count. */
  readonly shardStarts: readonly number[]
  /** Numbers this position adds to a round's vector (see the file comment). */
  readonly slots: number
  readonly rows: number
  epoch = 0
  members = 0
  private readonly taken: Uint32Array
  private readonly claims: Uint32Array
  /** Rows this member drew and has not yet had agreed (the batch of the round under way, or H local steps'). */
  private readonly pending: Uint32Array
  /** The shards this member claimed in the vector under way (null: none under way). */
  private announced: Set<number> | null = null
  /** The shards this member may read: it was their only claimant in the last round it applied. */
  private readable = new Set<number>()
  private readonly blockShard: Uint32Array
  private readonly seed: number
  private readonly windowBlocks: number
  private readonly shared: boolean
  /** This epoch's order of the blocks (a member's window is the first blocks of its own in this order), and each block's order of its rows. */
  private blockOrder: Uint32Array
  private readonly rowOrders = new Map<number, Uint32Array>()
  /** Rows agreed taken beyond a block's end: never, unless two members read one block (kept as a figure, checked in tests). */
  overTaken = 0

  constructor (init: DataEpochInit) {
    const starts = [0]
    for (const r of init.shardRows) starts.push(starts[starts.length - 1] + r)
    this.shardStarts = starts
    this.rows = starts[starts.length - 1]
    this.blocks = blocksOf(RowSet.all(this.rows), starts, init.blockRows)
    this.blockShard = Uint32Array.from(this.blocks, b => b.shard)
    this.slots = this.blocks.length + init.shardRows.length + 1
    this.taken = new Uint32Array(this.blocks.length)
    this.pending = new Uint32Array(this.blocks.length)
    this.claims = new Uint32Array(init.shardRows.length)
    this.seed = init.seed
    this.windowBlocks = Math.max(1, init.windowBlocks)
    this.shared = init.shared ?? true
    this.blockOrder = permutation(this.blocks.length, mixSeed(this.seed, this.epoch))
  }

  /** The shards wholly inside `rows` (the rows of the shards a peer owns and holds). */
  shardsIn (rows: RowSet): number[] {
    const out: number[] = []
    for (let s = 0; s + 1 < this.shardStarts.length; s++) {
      const from = this.shardStarts[s]
      const to = this.shardStarts[s + 1]
      if (to > from && rows.ranges.some(([a, b]) => a <= from && to <= b)) out.push(s)
    }
    return out
  }

  /** How many shards of `mine` this member reads now (it was their only claimant in its last round), and how many more than one member claimed in that round. */
  reading (mine: Iterable<number>): { shards: number, contested: number } {
    return { shards: this.mayRead(mine).size, contested: this.claims.reduce((n, c) => n + (c > 1 ? 1 : 0), 0) }
  }

  /** Rows this epoch has left (agreed). */
  get left (): number {
    let n = 0
    for (let b = 0; b < this.blocks.length; b++) n += this.size(b) - this.taken[b]
    return n
  }

  /** Rows taken this epoch (agreed). */
  get done (): number {
    return this.rows - this.left
  }

  /**
   * The rows of this member's next batch, drawn from the shards of `mine` it may read, `batchSize` of them when
   * every member has as many rows left as this one (more or fewer in proportion, so that the group ends the
   * epoch together); none when it may read none. They count as this member's until the next `apply`.
   */
  next (mine: Iterable<number>, batchSize: number): Uint32Array {
    const shards = this.mayRead(mine)
    const left = new Float64Array(this.claims.length)
    let drawn = 0
    for (let b = 0; b < this.blocks.length; b++) {
      left[this.blockShard[b]] += this.size(b) - this.taken[b]
      drawn += this.taken[b] + this.pending[b]
    }
    // the draws are a function of the position: a member restored from a checkpoint draws what it would have
    const draw = seededRandom(mixSeed(mixSeed(this.seed ^ 0x5bd1e995, this.epoch), drawn))
    let mineLeft = 0
    let claimedLeft = 0
    for (let s = 0; s < left.length; s++) {
      if (this.claims[s] === 1) claimedLeft += left[s]
      if (shards.has(s)) mineLeft += left[s]
    }
    let size = batchSize
    if (this.members > 1 && claimedLeft > 0) size = Math.round(batchSize * this.members * mineLeft / claimedLeft)
    size = Math.min(Math.max(size, mineLeft > 0 ? 1 : 0), MAX_BATCH_FACTOR * batchSize)
    // the window: this member's first blocks with rows left, in the epoch's block order
    const window: number[] = []
    const remaining: number[] = []
    let scan = 0
    const fill = (): void => {
      while (window.length < this.windowBlocks && scan < this.blockOrder.length) {
        const b = this.blockOrder[scan++]
        const r = this.size(b) - this.taken[b] - this.pending[b]
        if (r > 0 && shards.has(this.blockShard[b])) {
          window.push(b)
          remaining.push(r)
        }
      }
    }
    fill()
    const out: number[] = []
    let total = remaining.reduce((a, r) => a + r, 0)
    while (out.length < size && total > 0) {
      // a block with probability proportional to its rows left: the window's rows in a uniformly random order
      let pick = Math.floor(draw() * total)
      let j = 0
      while (pick >= remaining[j]) pick -= remaining[j++]
      const b = window[j]
      out.push(this.rowAt(b, this.taken[b] + this.pending[b]))
      this.pending[b] += 1
      remaining[j] -= 1
      total -= 1
      if (remaining[j] === 0) {
        window.splice(j, 1)
        remaining.splice(j, 1)
        const before = window.length
        fill()
        for (let k = before; k < window.length; k++) total += remaining[k]
      }
    }
    return Uint32Array.from(out)
  }

  /**
   * The blocks the next batches of `mine` draw from: the window and as many blocks after it (rows are drawn evenly
   * across a window, so its blocks run out at about the same time, and the next ones are wanted together). What a
   * reader loads ahead: two windows at most. None where the window is every block (rows in memory: nothing to load).
   */
  upcoming (mine: Iterable<number>): Block[] {
    if (!Number.isFinite(this.windowBlocks)) return []
    const shards = this.mayRead(mine)
    const out: Block[] = []
    for (let i = 0; i < this.blockOrder.length && out.length < 2 * this.windowBlocks; i++) {
      const b = this.blockOrder[i]
      if (shards.has(this.blockShard[b]) && this.taken[b] + this.pending[b] < this.size(b)) out.push(this.blocks[b])
    }
    return out
  }

  /** Writes this member's slots of the next round's vector into `out`: the rows it drew, the shards of `mine` it claims, and 1. */
  encode (out: Float32Array, mine: Iterable<number>): void {
    if (out.length !== this.slots) throw new RangeError(`a data position takes ${this.slots} slots, not ${out.length}`)
    const k = this.blocks.length
    for (let b = 0; b < k; b++) out[b] = this.pending[b]
    out.fill(0, k, this.slots - 1)
    this.announced = new Set()
    for (const s of mine) {
      out[k + s] = 1
      this.announced.add(s)
    }
    out[this.slots - 1] = 1
  }

  /** Applies a round's summed slots (every member's `encode`, or this member's own when alone); returns the rows they took. */
  apply (sum: Float32Array): number {
    if (sum.length !== this.slots) throw new RangeError(`a data position takes ${this.slots} slots, not ${sum.length}`)
    const k = this.blocks.length
    let took = 0
    for (let b = 0; b < k; b++) {
      const n = Math.round(sum[b])
      const t = this.taken[b] + n
      const size = this.size(b)
      if (t > size) this.overTaken += t - size
      this.taken[b] = Math.min(t, size)
      took += n
    }
    const announced = this.announced ?? new Set<number>()
    this.readable = new Set()
    for (let s = 0; s < this.claims.length; s++) {
      this.claims[s] = Math.round(sum[k + s])
      if (this.claims[s] === 1 && announced.has(s)) this.readable.add(s)
    }
    this.members = Math.round(sum[this.slots - 1])
    this.pending.fill(0)
    this.announced = null
    if (this.left === 0) this.startEpoch(this.epoch + 1)
    return took
  }

  /** A round this member drew rows for did not happen for it: its rows are not taken, and it reads nothing until its next round. */
  discard (): void {
    this.pending.fill(0)
    this.announced = null
    this.readable = new Set()
  }

  /**
   * The agreed part of the position, as checkpoints and state sync carry it: [epoch, members of the last round,
   * rows taken from each block this epoch…, claimants of each shard in the last round…].
   */
  state (): Float32Array {
    const out = new Float32Array(2 + this.taken.length + this.claims.length)
    out[0] = this.epoch
    out[1] = this.members
    out.set(this.taken, 2)
    out.set(this.claims, 2 + this.taken.length)
    return out
  }

  /** Takes an agreed position (`state()` of a checkpoint, of the swarm); this member reads nothing until its next round. */
  restore (state: Float32Array): void {
    const k = this.taken.length
    if (state.length !== 2 + k + this.claims.length) throw new RangeError(`a data position of ${state.length - 2} blocks and shards, this data set has ${k} blocks and ${this.claims.length} shards`)
    this.startEpoch(Math.round(state[0]))
    this.members = Math.round(state[1])
    for (let b = 0; b < k; b++) this.taken[b] = Math.min(Math.max(0, Math.round(state[2 + b])), this.size(b))
    for (let s = 0; s < this.claims.length; s++) this.claims[s] = Math.max(0, Math.round(state[2 + k + s]))
    this.discard()
  }

  /** Starts epoch `epoch` with nothing taken and no claims (a checkpoint written before positions were agreed). */
  reset (epoch: number): void {
    this.startEpoch(epoch)
    this.claims.fill(0)
    this.members = 0
    this.discard()
  }

  /** The shards of `mine` this member may read now. */
  private mayRead (mine: Iterable<number>): Set<number> {
    const shards = new Set<number>()
    for (const s of mine) if (!this.shared || this.readable.has(s)) shards.add(s)
    return shards
  }

  private startEpoch (epoch: number): void {
    this.epoch = epoch
    this.taken.fill(0)
    this.rowOrders.clear()
    this.blockOrder = permutation(this.blocks.length, mixSeed(this.seed, epoch))
  }

  private size (b: number): number {
    return this.blocks[b].end - this.blocks[b].start
  }

  /** The row at position `i` of block `b`'s order this epoch. */
  private rowAt (b: number, i: number): number {
    let order = this.rowOrders.get(b)
    if (order === undefined) {
      order = permutation(this.size(b), mixSeed(mixSeed(this.seed, this.epoch), b + 1))
      this.rowOrders.set(b, order)
      // the orders of blocks taken whole are not needed again this epoch
      if (this.rowOrders.size > 4 * this.windowBlocks) {
        for (const [other] of this.rowOrders) if (this.taken[other] + this.pending[other] >= this.size(other)) this.rowOrders.delete(other)
      }
    }
    return this.blocks[b].start + order[i]
  }
}
