/// <reference types="@webgpu/types" />
/**
 * The serve scheduler's running batch on webgpu: each sequence holds one row ("slot") of a fused
 * decode engine (src/engines/webgpu_decode) from the step it joins to the step it leaves, and
 * tokens are drawn on the GPU (ops/sample_webgpu), so a step reads back 4 bytes per slot.
 *   const slots = new SlotBatch(model, 32);                       // at most 32 sequences
 *   const [s] = slots.join(model.prefill([[2, 651]]), 0, [2, 651], 1);   // row 0 of a prefilled state into a free slot
 *   const ids = await slots.pick(new Map([[s, {seed: 1, step: 0, temperature: 0.8, topP: 0.95}]]));
 *
 * Joining copies the prefilled row into the engine's buffers (FusedDecoder.importRow) and its
 * logits into the slot's row of the step's logits; leaving only frees the slot. A free slot's row
 * is still computed by every step (with id 0 at position 0, which restarts it as a document): the
 * engine's dispatches are made for its row count and the cost is the weights read once per step
 * whatever the rows; its pick is drawn greedily and ignored. The engine's capacity is a bucket
 * (1, 2, 4, 8, 16, 32, ..., at most the slots asked for) that grows to fit the sequences (their
 * layers move to the bigger engine once: exportLayers, then importRow per live slot, indices
 * kept); a batch that has emptied keeps its engine until a join needs fewer rows than it has.
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

export class SlotBatch {
  private eng: FusedDecoder | null = null;
  /** The logits each slot's next token is drawn from [C, V]: the last step's, or a joining row's prefill. */
  private logits: tf.Tensor | null = null;
  private readonly sampler: GpuSampler;
  /** Per slot: whether a sequence holds it, and the position its next token is fed at. */
  private live: boolean[] = [];
  private positions: number[] = [];
  private readonly V: number;

  constructor(
    readonly model: CausalLMCore,
    readonly maxSlots: number,
  ) {
    if (!slotsApply(model, maxSlots))
      throw new Error(
        `engine slots need the webgpu backend, the fused decode engine, GPU sampling and <= ${fusedDecodeConfig.maxBatch} slots`,
      );
    this.V = model.config.vocab_size;
    this.sampler = new GpuSampler(webgpuBackend().device, this.V, maxSlots, maxSlots);
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
    return this.live.filter(Boolean).length;
  }

  /**
   * Places row `row` of a prefilled state (its layers and logits) into `n` free slots, one per
   * choice (the same prompt), growing the engine if needed; returns the slots. The state stays the caller's.
   */
  join(state: GenerationState, row: number, prompt: number[], n: number): number[] {
    if (!(Number.isInteger(row) && row >= 0 && row < state.batchSize))
      throw new RangeError(`join: row ${row} outside a state of ${state.batchSize} rows`);
    if (this.used + n > this.maxSlots) throw new Error(`join: ${n} more sequences exceed ${this.maxSlots} slots`);
    this.reserve(this.used + n);
    const eng = this.eng!;
    const slots: number[] = [];
    for (let s = 0; s < eng.B && slots.length < n; s++) if (!this.live[s]) slots.push(s);
    const layers: LayerState[] = state.layers;
    const be = webgpuBackend();
    for (const s of slots) {
      eng.importRow(s, layers, row);
      this.live[s] = true;
      this.positions[s] = state.positions[row];
      this.sampler.setSeen(s, prompt);
    }
    // The prefill's logits into the joining slots' rows of the step's logits.
    const src = gpuBufferOf(be, state.logits),
      dst = gpuBufferOf(be, this.logits!);
    flushTf(be);
    const enc = be.device.createCommandEncoder();
    for (const s of slots) enc.copyBufferToBuffer(src, row * this.V * 4, dst, s * this.V * 4, this.V * 4);
    be.device.queue.submit([enc.finish()]);
    return slots;
  }

  /** Frees a slot: its row goes on being computed until a sequence joins there. */
  leave(slot: number): void {
    this.live[slot] = false;
  }

  /**
   * Draws every live slot's next token from the current logits, on the GPU; returns the ids by slot
   * (entries of free slots mean nothing), or null when a live row had nothing to draw (NaN logits).
   */
  async pick(sampling: Map<number, SlotSampling>): Promise<Int32Array | null> {
    if (this.eng?.failed != null) throw new Error(`fused WebGPU decode failed: ${this.eng.failed}`);
    const C = this.capacity;
    const rows: RowSampling[] = [];
    for (let s = 0; s < C; s++) {
      const o = sampling.get(s);
      rows.push(o != null && this.live[s] ? {...o, seenRow: s} : {seenRow: s, seed: 0, step: 0, temperature: 0});
    }
    const be = webgpuBackend();
    const buf = gpuBufferOf(be, this.logits!);
    flushTf(be);
    const ids = await this.sampler.sample(buf, rows);
    for (const s of sampling.keys()) if (this.live[s] && ids[s] < 0) return null;
    return ids;
  }

  /** The current logits of these slots, on the host: [slots.length * V]. */
  async logitsRows(slots: number[]): Promise<Float32Array> {
    const idx = tf.tensor1d(slots, 'int32');
    const rows = tf.gather(this.logits!, idx, 0);
    idx.dispose();
    try {
      return (await rows.data()) as Float32Array;
    } finally {
      rows.dispose();
    }
  }

  /** One decode step: live slots are fed their token (by slot); free slots id 0 at position 0. */
  advance(ids: Map<number, number>): void {
    const eng = this.eng!;
    const feed: number[] = [],
      pos: number[] = [];
    for (let s = 0; s < eng.B; s++) {
      const id = this.live[s] ? ids.get(s) : undefined;
      feed.push(id ?? 0);
      pos.push(id != null ? this.positions[s]++ : 0);
    }
    const next = eng.step(feed, pos);
    this.logits?.dispose();
    this.logits = next;
  }

  dispose(): void {
    this.reset();
    this.sampler.dispose();
  }

  /** Drops the engine (the batch is empty): the next join starts at the smallest fitting bucket. */
  private reset(): void {
    this.eng?.dispose();
    this.eng = null;
    this.logits?.dispose();
    this.logits = null;
    this.live = [];
    this.positions = [];
  }

  /**
   * Makes the engine hold at least `rows` rows (the smallest bucket that does), moving live slots
   * over; an empty batch whose engine is larger than needed starts over at the fitting bucket.
   */
  reserve(rows: number): void {
    if (rows > this.maxSlots) throw new Error(`${rows} sequences exceed ${this.maxSlots} slots`);
    const cap = slotBuckets(this.maxSlots).find((c) => c >= rows)!;
    if (this.used === 0 && cap < this.capacity) this.reset();
    const C = this.capacity;
    if (rows <= C) return;
    const eng = new FusedDecoder(this.model, cap);
    const be = webgpuBackend();
    const logits = newGpuTensor(be, [cap, this.V]);
    if (this.eng != null) {
      const old = this.eng;
      const layers = old.exportLayers();
      try {
        for (let s = 0; s < C; s++) if (this.live[s]) eng.importRow(s, layers, s);
      } catch (e) {
        eng.dispose(); // the old engine still holds every row
        logits.tensor.dispose();
        throw e;
      } finally {
        tf.dispose(layers.flatMap((l) => Object.values(l as unknown as Record<string, tf.Tensor>)));
      }
      flushTf(be);
      const enc = be.device.createCommandEncoder();
      enc.copyBufferToBuffer(gpuBufferOf(be, this.logits!), 0, logits.buffer, 0, C * this.V * 4);
      be.device.queue.submit([enc.finish()]);
      old.dispose();
      this.logits!.dispose();
    }
    this.eng = eng;
    this.logits = logits.tensor;
    for (let s = C; s < cap; s++) {
      this.live[s] = false;
      this.positions[s] = 0;
    }
  }
}
