/// <reference types="@webgpu/types" />
/**
 * The serve scheduler's running batch on webgpu: each sequence holds a slot, one row of a fused
 * decode engine (src/engines/webgpu_decode), from the step it joins to the step it leaves, and
 * tokens are drawn on the GPU (ops/sample_webgpu), so a step reads back 4 bytes per row.
 *   const slots = new SlotBatch(model, 32);                       // at most 32 sequences
 *   const [s] = slots.join(model.prefill([[2, 651]]), 0, [2, 651], 1);   // row 0 of a prefilled state into a free slot
 *   const {ids} = await slots.step(new Map([[s, {seed: 1, step: 0, temperature: 0.8, topP: 0.95}]]), []);
 *
 * Queued one step ahead (as src/generation/step_queue.ts does for generate): step() draws every
 * row's token from the current logits on the GPU, copies the ids into the engine's step buffer
 * there and submits the step that feeds them (FusedDecoder.stepAhead), then reads the ids back
 * while that step runs. The caller judges them (and joins, leaves) before the next step(), so
 * the state is consistent at each boundary: a sequence that ended with these ids has been fed
 * its last token by the step in flight, a dead row whose result nobody reads.
 *
 * Joining copies the prefilled row into the engine's buffers (FusedDecoder.importRow) and its
 * logits into the row's place in the engine's logits; leaving only frees the row. A free row is
 * still computed by every step (id 0 or whatever it drew, at position 0, which restarts it as a
 * document) and its pick ignored: the dispatches are made for the engine's row count. So the
 * engine is kept small: its capacity is a bucket (1, 2, 4, 8, 16, 32, ..., at most the slots asked
 * for) that grows when sequences need it and shrinks (the sequences packed into the first rows)
 * once they have fitted in half of it for SHRINK_AFTER steps: a move is two copies of the state
 * (exportLayers, importRow), ~one step's time, where a dead row costs its share of every step.
 * Joins take the lowest free rows. Slot ids stay as given while rows move.
 *
 * Every engine is built with the tuning of the largest bucket (FusedDecoderOptions.tuningRows):
 * a row's sums run in the same order whatever the bucket, so a sequence's tokens do not depend
 * on how many others run beside it.
 *
 * Shape letters: C the engine's capacity (rows), V vocab_size.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerState} from '../../layers/model_layers';
import {GpuSampler, type RowSampling} from '../../ops/sample_webgpu';
import type {CausalLMCore} from '../core/model';
import {FusedDecoder, fusedDecodeApplies, fusedDecodeConfig} from '../engines/webgpu_decode';
import {flushTf, gpuBufferOf, newGpuTensor, webgpuBackend} from '../engines/webgpu_decode/tfjs_webgpu';
import {gpuSamplingEnabled} from '../generation/gpu_sampling';
import type {GenerationState} from '../generation/state';

/** How a slot's next token is drawn: the GPU sampler's options, Philox keyed by (seed, step). */
export type SlotSampling = Omit<RowSampling, 'seenRow'>;

/** The engine capacities used for at most `max` slots: powers of two below it, then max. */
export function slotBuckets(max: number): number[] {
  const out: number[] = [];
  for (let c = 1; c < max; c *= 2) out.push(c);
  out.push(max);
  return out;
}

/** Whether the scheduler can run its batch in engine slots on this backend (else: GenerationState rows). */
export function slotsApply(model: CausalLMCore, maxSlots: number): boolean {
  return fusedDecodeApplies(model, 1) && gpuSamplingEnabled() && maxSlots <= fusedDecodeConfig.maxBatch;
}

/**
 * Refuses, in one line, a --max-batch that engine slots cannot hold on this backend: more rows than
 * the engine runs, or state and logits that do not fit in GPU memory. Nothing to check elsewhere.
 */
export async function checkMaxBatch(model: CausalLMCore, maxBatch: number): Promise<void> {
  if (!fusedDecodeApplies(model, 1) || !gpuSamplingEnabled()) return;
  const most = fusedDecodeConfig.maxBatch;
  if (maxBatch > most)
    throw new Error(`--max-batch ${maxBatch}: the webgpu decode engine holds at most ${most} sequences`);
  await SlotBatch.checkFits(model, maxBatch);
}

/** Steps the sequences must fit in half the engine's rows before it shrinks to them. */
export const SHRINK_AFTER = 8;

/** What step() reads back: per slot of the sampling map, its id (-1: nothing to draw) and, when asked, its logits row. */
export interface SlotStep {
  ids: Map<number, number>;
  logits: Map<number, Float32Array>;
}

/** Counters (the scheduler's stats). */
export interface SlotCounters {
  /** Engines built (first, grown, shrunk). */
  engines: number;
  /** Engine rows computed with no sequence, summed over steps. */
  deadRows: number;
}

export class SlotBatch {
  private eng: FusedDecoder | null = null;
  private readonly sampler: GpuSampler;
  /** Per slot (0 .. maxSlots-1): its engine row, or -1 when free. */
  private rowOf: number[];
  /** Per engine row: the slot in it (-1: dead) and the position its next token is fed at. */
  private slotAt: number[] = [];
  private positions: number[] = [];
  private readonly V: number;
  /** The bitmap dead rows' draws mark (the sampler's last): slots keep theirs. */
  private readonly scratchSeen: number;
  private readonly read: GPUBuffer;
  private smallFor = 0;
  readonly counters: SlotCounters = {engines: 0, deadRows: 0};

  constructor(
    readonly model: CausalLMCore,
    readonly maxSlots: number,
  ) {
    if (!slotsApply(model, maxSlots))
      throw new Error(
        `engine slots need the webgpu backend, the fused decode engine, GPU sampling and <= ${fusedDecodeConfig.maxBatch} slots`,
      );
    this.V = model.config.vocab_size;
    const device = webgpuBackend().device;
    this.sampler = new GpuSampler(device, this.V, maxSlots, maxSlots + 1);
    this.scratchSeen = maxSlots;
    this.rowOf = Array(maxSlots).fill(-1);
    this.read = device.createBuffer({
      size: Math.ceil((maxSlots * 4) / 16) * 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: 'serve ids read',
    });
  }

  /**
   * Builds the largest engine and the sampler for `maxSlots` once, under the device's
   * out-of-memory scope: throws a one-line error when they do not fit beside the weights.
   */
  static async checkFits(model: CausalLMCore, maxSlots: number): Promise<void> {
    const device = webgpuBackend().device;
    device.pushErrorScope('out-of-memory');
    let made: {eng?: FusedDecoder; s?: GpuSampler; t?: tf.Tensor} = {};
    let thrown: unknown = null;
    try {
      made = {eng: new FusedDecoder(model, maxSlots)};
      made.s = new GpuSampler(device, model.config.vocab_size, maxSlots, maxSlots);
      made.t = newGpuTensor(webgpuBackend(), [maxSlots, model.config.vocab_size]).tensor;
    } catch (e) {
      thrown = e;
    }
    const err = await device.popErrorScope();
    made.eng?.dispose();
    made.s?.dispose();
    made.t?.dispose();
    if (thrown != null) throw new Error(`--max-batch ${maxSlots}: ${(thrown as Error).message.split('\n')[0]}`);
    const why = err?.message ?? null;
    if (why != null) {
      const c = model.config;
      const rowBytes = c.layers_block_type.reduce(
        (n, t) =>
          n +
          4 *
            (t === 'recurrent'
              ? (c.conv1d_width + 1) * c.lru_width
              : (c.attention_window_size + 1) * (2 * c.num_key_value_heads * c.head_dim + 1)),
        4 * 2 * c.vocab_size,
      );
      throw new Error(
        `--max-batch ${maxSlots} does not fit in GPU memory beside the weights ` +
          `(${((maxSlots * rowBytes) / 2 ** 30).toFixed(2)} GiB of decoding state and logits): ${why.split('\n')[0]}`,
      );
    }
  }

  /** Rows of the engine now (0 before the first join). */
  get capacity(): number {
    return this.eng?.B ?? 0;
  }

  /** Slots held by sequences. */
  get used(): number {
    return this.rowOf.filter((r) => r >= 0).length;
  }

  /**
   * Places row `row` of a prefilled state (its layers and logits) into `n` free slots, one per
   * choice (the same prompt), in the lowest free rows, growing the engine if needed; returns the
   * slots. Call between steps (the copies queue after the step in flight). The state stays the caller's.
   */
  join(state: GenerationState, row: number, prompt: number[], n: number): number[] {
    if (!(Number.isInteger(row) && row >= 0 && row < state.batchSize))
      throw new RangeError(`join: row ${row} outside a state of ${state.batchSize} rows`);
    if (this.used + n > this.maxSlots) throw new Error(`join: ${n} more sequences exceed ${this.maxSlots} slots`);
    this.reserve(this.used + n);
    const eng = this.eng!;
    const slots: number[] = [],
      rows: number[] = [];
    for (let r = 0; r < eng.B && rows.length < n; r++) if (this.slotAt[r] < 0) rows.push(r);
    for (let s = 0; s < this.maxSlots && slots.length < n; s++) if (this.rowOf[s] < 0) slots.push(s);
    const layers: LayerState[] = state.layers;
    const be = webgpuBackend();
    rows.forEach((r, k) => {
      eng.importRow(r, layers, row);
      this.slotAt[r] = slots[k];
      this.rowOf[slots[k]] = r;
      this.positions[r] = state.positions[row];
      this.sampler.setSeen(slots[k], prompt);
    });
    // The prefill's logits into the joining rows of the engine's logits (what the next draw reads).
    const src = gpuBufferOf(be, state.logits);
    flushTf(be);
    const enc = be.device.createCommandEncoder();
    for (const r of rows) enc.copyBufferToBuffer(src, row * this.V * 4, eng.logitsBuffer, r * this.V * 4, this.V * 4);
    be.device.queue.submit([enc.finish()]);
    this.smallFor = 0;
    return slots;
  }

  /** Frees a slot: its row goes on being computed (dead) until a sequence joins there or the engine shrinks. */
  leave(slot: number): void {
    const r = this.rowOf[slot];
    if (r == null || r < 0) return;
    this.rowOf[slot] = -1;
    this.slotAt[r] = -1;
  }

  /**
   * One step, queued ahead: draws the token of every slot in `sampling` from the current logits
   * on the GPU, submits the step that feeds them (dead rows: position 0), and resolves, while
   * that step runs, with the ids by slot (-1: nothing to draw, NaN logits) and the logits rows
   * of the slots in `logitsOf` (read before the step overwrites them). Slots not in `sampling`
   * are fed nothing: they run dead this step. Call again only after the promise has resolved.
   */
  async step(sampling: Map<number, SlotSampling>, logitsOf: number[]): Promise<SlotStep> {
    const eng = this.eng;
    if (eng == null) throw new Error('step: no sequence has joined');
    if (eng.failed != null) throw new Error(`fused WebGPU decode failed: ${eng.failed}`);
    const C = eng.B,
      V = this.V;
    const rows: RowSampling[] = [];
    const positions: number[] = [];
    let dead = 0;
    for (let r = 0; r < C; r++) {
      const slot = this.slotAt[r];
      const o = slot >= 0 ? sampling.get(slot) : undefined;
      if (o != null) {
        rows.push({...o, seenRow: slot});
        positions.push(this.positions[r]++);
      } else {
        rows.push({seenRow: this.scratchSeen, seed: 0, step: 0, temperature: 0});
        positions.push(0);
        dead++;
      }
    }
    this.counters.deadRows += dead;
    await this.sampler.prepare(rows);
    const device = eng.device;
    const lpRows = logitsOf.map((s) => this.rowOf[s]).filter((r) => r >= 0);
    const lpRead =
      lpRows.length > 0
        ? device.createBuffer({size: lpRows.length * V * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST})
        : null;
    const idBytes = Math.ceil((C * 4) / 16) * 16;
    eng.stepAhead(positions, (enc, stepBuf, at) => {
      lpRows.forEach((r, k) => enc.copyBufferToBuffer(eng.logitsBuffer, r * V * 4, lpRead!, k * V * 4, V * 4));
      const picks = this.sampler.encode(enc, eng.logitsBuffer, rows);
      enc.copyBufferToBuffer(picks, 0, stepBuf, at, C * 4);
      enc.copyBufferToBuffer(picks, 0, this.read, 0, idBytes);
    });
    await this.read.mapAsync(GPUMapMode.READ, 0, idBytes);
    const all = new Int32Array(this.read.getMappedRange(0, idBytes).slice(0, C * 4));
    this.read.unmap();
    const out: SlotStep = {ids: new Map(), logits: new Map()};
    for (let r = 0; r < C; r++) {
      const slot = this.slotAt[r];
      if (slot >= 0 && sampling.has(slot)) out.ids.set(slot, all[r]);
    }
    if (lpRead != null) {
      await lpRead.mapAsync(GPUMapMode.READ);
      const f = new Float32Array(lpRead.getMappedRange().slice(0));
      lpRead.unmap();
      lpRead.destroy();
      lpRows.forEach((r, k) => out.logits.set(this.slotAt[r], f.subarray(k * V, (k + 1) * V)));
    }
    return out;
  }

  /**
   * At a step boundary: when the sequences have fitted in a bucket of at most half the engine's
   * rows for SHRINK_AFTER calls, moves them into an engine of that bucket.
   */
  settle(): void {
    const used = this.used,
      C = this.capacity;
    const fit = slotBuckets(this.maxSlots).find((c) => c >= used)!;
    if (used === 0 || fit * 2 > C) {
      this.smallFor = 0;
      return;
    }
    if (++this.smallFor >= SHRINK_AFTER) this.rebuild(fit);
  }

  dispose(): void {
    this.reset();
    this.sampler.dispose();
    this.read.destroy();
  }

  /** Drops the engine (the batch is empty): the next join starts at the smallest fitting bucket. */
  private reset(): void {
    this.eng?.dispose();
    this.eng = null;
    this.rowOf.fill(-1);
    this.slotAt = [];
    this.positions = [];
    this.smallFor = 0;
  }

  /**
   * Makes the engine hold at least `rows` rows (the smallest bucket that does), moving live rows
   * over; an empty batch whose engine is larger than needed starts over at the fitting bucket.
   */
  reserve(rows: number): void {
    if (rows > this.maxSlots) throw new Error(`${rows} sequences exceed ${this.maxSlots} slots`);
    const cap = slotBuckets(this.maxSlots).find((c) => c >= rows)!;
    if (this.used === 0 && cap < this.capacity) this.reset();
    if (rows <= this.capacity) return;
    this.rebuild(cap);
  }

  /**
   * A new engine of `cap` rows with the live rows moved in: kept in place when growing, packed
   * into the first rows (in row order) when shrinking; their logits move with them.
   */
  private rebuild(cap: number): void {
    const C = this.capacity;
    const eng = new FusedDecoder(this.model, cap, {tuningRows: this.maxSlots});
    this.counters.engines++;
    const live: number[] = [];
    for (let r = 0; r < C; r++) if (this.slotAt[r] >= 0) live.push(r);
    const to = cap >= C ? live : live.map((_, k) => k);
    if (this.eng != null) {
      const old = this.eng;
      const be = webgpuBackend();
      const layers = old.exportLayers();
      try {
        live.forEach((r, k) => eng.importRow(to[k], layers, r));
      } catch (e) {
        eng.dispose(); // the old engine still holds every row
        throw e;
      } finally {
        tf.dispose(layers.flatMap((l) => Object.values(l as unknown as Record<string, tf.Tensor>)));
      }
      flushTf(be);
      const enc = be.device.createCommandEncoder();
      live.forEach((r, k) =>
        enc.copyBufferToBuffer(old.logitsBuffer, r * this.V * 4, eng.logitsBuffer, to[k] * this.V * 4, this.V * 4),
      );
      be.device.queue.submit([enc.finish()]);
      old.dispose();
    }
    const slotAt = Array(cap).fill(-1),
      positions = Array(cap).fill(0);
    live.forEach((r, k) => {
      slotAt[to[k]] = this.slotAt[r];
      positions[to[k]] = this.positions[r];
      this.rowOf[this.slotAt[r]] = to[k];
    });
    this.eng = eng;
    this.slotAt = slotAt;
    this.positions = positions;
    this.smallFor = 0;
  }
}
