/// <reference types="@webgpu/types" />
/**
 * Decoding steps that queue ahead of the host (webgpu, fused decode engine): a step's token is
 * picked on the GPU from the logits (greedy: by the step that made them, inside its own plan,
 * GRIFFIN_FUSED_ARGMAX=0 for a pick of its own; or the GPU sampler), copied on the GPU into
 * the engine's step buffer, and the step that feeds it is submitted at once; the picks come back
 * through a small ring of MAP_READ buffers while that step runs, so the GPU does not wait for the
 * host's read-back and judging. generate.ts drives it, with up to queueDepth() picks (and their
 * steps) in flight: 2 by default, 1 with a caller's state (see there).
 *   const q = await StepQueue.create(model, 2, null);                    // greedy; null where it does not apply
 *   const {ids, fed} = q!.submit(state, [0, 1], [0, 0], true);           // pick from state.logits, queue the step feeding it
 *   const picked = await ids;                                            // [b]; fed: state advanced by them on the GPU
 * After a fused prefill, the first pick is encoded into the prefill's last submit (encodeFirst, from
 * prefillThen's hook) and submitFirst queues only the step that feeds it (greedy: that step takes
 * the next pick inside its own plan, as submit's steps do).
 *
 * Off with GRIFFIN_QUEUED_DECODE=0 (or queuedDecodeConfig.enabled = false): the picks then come
 * back before the host submits the next step (the path of cpu and wasm, which have no engine).
 * Depth: GRIFFIN_QUEUE_DEPTH=1|2 (or queuedDecodeConfig.depth; default 2; anything else is refused):
 * how many picks generate keeps in flight when no caller's state is kept.
 *
 * Shape letters: b rows of the state, V vocabulary.
 */
import * as tf from '@tensorflow/tfjs';
import {RowArgmaxRunner} from '../../ops/row_argmax/runner';
import type {CausalLMCore} from '../core/model';
import {type FusedDecoder, fusedDecoderFor} from '../engines/webgpu_decode';
import {flushTf, webgpuBackend} from '../engines/webgpu_decode/tfjs_webgpu';
import {inPlanArgmax} from '../engines/webgpu_decode/tuning';
import {tracePhase} from '../util/host_trace';
import type {GenerationGpuSampler} from './gpu_sampling';
import type {GenerationState} from './state';

/**
 * enabled: null = env GRIFFIN_QUEUED_DECODE (0/false/off: off; unset or anything else: on).
 * depth: null = env GRIFFIN_QUEUE_DEPTH (1 or 2; unset: 2).
 */
export const queuedDecodeConfig: {enabled: boolean | null; depth: number | null} = {enabled: null, depth: null};

/** The deepest queue this module serves (the read-back ring holds one buffer more). */
export const MAX_QUEUE_DEPTH = 2;

export function queuedDecodeEnabled(): boolean {
  if (queuedDecodeConfig.enabled != null) return queuedDecodeConfig.enabled;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_QUEUED_DECODE : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}

/**
 * How many picks (each with the step feeding it) generate keeps in flight without a caller's
 * state: queuedDecodeConfig.depth, else GRIFFIN_QUEUE_DEPTH, else 2. Throws on anything but 1 or 2.
 */
export function queueDepth(): number {
  const set = queuedDecodeConfig.depth;
  if (set != null) {
    if (set !== 1 && set !== 2) throw new Error(`queuedDecodeConfig.depth must be 1 or 2, got ${set}`);
    return set;
  }
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_QUEUE_DEPTH : undefined;
  if (v == null || v === '') return MAX_QUEUE_DEPTH;
  if (v !== '1' && v !== '2') throw new Error(`GRIFFIN_QUEUE_DEPTH must be 1 or 2, got "${v}"`);
  return Number(v);
}

/**
 * Diagnostics (tests, bench): picks submitted through a queue, steps queued on the GPU with them,
 * picks the previous step took inside its own plan (greedy), first picks that went in a fused
 * prefill's submit (encodeFirst), picks submitted while an earlier pick of the same queue was
 * still unread (its step still queued: two steps in flight), and the most picks in flight at once.
 */
export const stepQueueStats = {picks: 0, queuedSteps: 0, inPlanPicks: 0, firstWithPrefill: 0, ahead: 0, maxInFlight: 0};

/** A submitted pick: its ids (resolved once read back) and whether its step was queued (fed). */
export interface QueuedPick {
  ids: Promise<Int32Array>;
  fed: boolean;
}

/**
 * One argmax runner per decode engine (made with it, freed with it), so that a generation makes
 * no pipeline, buffer or bind group for its picks (the engine's logits buffer stays bound).
 * Queues on one engine share it: each pick is copied out of it within the submit that made it,
 * or (the first pick) in the step submitted right after, with no await in between.
 */
const argmaxRunners = new WeakMap<FusedDecoder, RowArgmaxRunner>();

function argmaxFor(dec: FusedDecoder, V: number): RowArgmaxRunner {
  let r = argmaxRunners.get(dec);
  if (r == null) {
    const made = new RowArgmaxRunner(dec.device, V, dec.B);
    argmaxRunners.set(dec, made);
    dec.onDispose(() => made.dispose());
    r = made;
  }
  return r;
}

/**
 * Read-back buffers in the ring: one per pick in flight, and one more that the pick read last
 * frees only when its reader resumes (a depth of d needs d + 1).
 */
const RING = MAX_QUEUE_DEPTH + 1;

export class StepQueue {
  /** Read-back buffers, made as first used (a generation of one token makes one). */
  private readonly ring: GPUBuffer[] = [];
  private next = 0;
  private disposed = false;
  /** Picks submitted whose ids have not come back yet. */
  private inFlight = 0;
  /** The first pick, encoded into a fused prefill's submit (encodeFirst), not yet fed (submitFirst). */
  private first: {out: GPUBuffer; read: GPUBuffer; b: number} | null = null;
  /** Greedy: a runner of the queue's own, made when no engine's runner is left (argmaxRunner). */
  private spare: RowArgmaxRunner | null = null;

  private constructor(
    private readonly model: CausalLMCore,
    private readonly device: GPUDevice,
    private readonly argmax: RowArgmaxRunner | null,
    private readonly sampler: GenerationGpuSampler | null,
    private readonly b: number,
  ) {}

  /**
   * A queue for up to b rows, picking greedily (sampler null) or with the GPU sampler (whose
   * kernels are built here); null unless on webgpu with the fused engine for b rows, and enabled.
   */
  static async create(model: CausalLMCore, b: number, sampler: GenerationGpuSampler | null): Promise<StepQueue | null> {
    if (tf.getBackend() !== 'webgpu' || !queuedDecodeEnabled()) return null;
    const dec = fusedDecoderFor(model, b);
    if (dec == null) return null;
    const device = webgpuBackend().device;
    await sampler?.prepare();
    const argmax = sampler == null ? argmaxFor(dec, model.config.vocab_size) : null;
    return new StepQueue(model, device, argmax, sampler, b);
  }

  /**
   * Picks one token per row of `state` from its logits (row k is input row rows[k] at step
   * steps[k]: the sampler's seen-id bitmap and Philox counter) and, with `feed`, queues the
   * fused step that feeds them to `state` (positions advanced now). ids resolves to the picks
   * (-1: a row of NaN logits); fed says whether the step was queued: false with feed true means
   * the engine did not apply to this batch and the caller feeds the ids itself (once read).
   * May be called again before ids resolve (the next pick then reads this step's logits).
   */
  submit(state: GenerationState, rows: number[], steps: number[], feed: boolean): QueuedPick {
    if (this.disposed) throw new Error('StepQueue: disposed');
    const b = state.batchSize;
    // The engine first: making it may retire another, whose logits a state then takes back.
    const eng = feed ? fusedDecoderFor(this.model, b) : null;
    const src = state.gpuLogits();
    const read = this.nextRead();
    const pick = (enc: GPUCommandEncoder): GPUBuffer => {
      const out =
        this.sampler != null
          ? this.sampler.encode(enc, src.buffer, rows, steps)
          : this.argmaxRunner(eng).encode(enc, src.buffer, b, src.engine);
      enc.copyBufferToBuffer(out, 0, read, 0, b * 4);
      return out;
    };
    stepQueueStats.picks++;
    let mapped: Promise<void> | null = null;
    if (eng != null) {
      stepQueueStats.queuedSteps++;
      // Greedy: the step picks its successor's ids itself (in its own plan), unless switched off.
      const argmax = this.sampler == null && inPlanArgmax();
      state.fusedStepAhead(
        eng,
        (enc, stepBuf, at) => {
          // The engine's own pick from these logits, when the step that made them took it.
          const ready = argmax ? state.fusedGreedyIds() : null;
          if (ready != null) {
            stepQueueStats.inPlanPicks++;
            enc.copyBufferToBuffer(ready, 0, read, 0, b * 4);
          } else enc.copyBufferToBuffer(pick(enc), 0, stepBuf, at, b * 4);
        },
        {argmax, afterIds: () => (mapped = read.mapAsync(GPUMapMode.READ))},
      );
    } else {
      flushTf(webgpuBackend()); // the tfjs work that wrote the logits runs first
      const enc = this.device.createCommandEncoder();
      const ready = this.sampler == null && inPlanArgmax() ? state.fusedGreedyIds() : null;
      if (ready != null) {
        stepQueueStats.inPlanPicks++;
        enc.copyBufferToBuffer(ready, 0, read, 0, b * 4);
      } else pick(enc);
      this.device.queue.submit([enc.finish()]);
    }
    tracePhase('pick.submit');
    return {ids: this.readBack(mapped ?? read.mapAsync(GPUMapMode.READ), read, b), fed: eng != null};
  }

  /**
   * Encodes the first pick (rows 0..b-1 at step 0) from `logits` (the decode engine's logits
   * buffer, which a fused prefill's head has just written) into `enc`, the prefill's last
   * encoder, with the copy that reads it back: prefill, head and pick are one submit. Then
   * submitFirst queues the step that feeds it.
   */
  encodeFirst(enc: GPUCommandEncoder, logits: GPUBuffer, b: number): void {
    if (this.disposed) throw new Error('StepQueue: disposed');
    const rows = Array.from({length: b}, (_, i) => i);
    const read = this.nextRead();
    const out =
      this.sampler != null
        ? this.sampler.encode(
            enc,
            logits,
            rows,
            rows.map(() => 0),
          )
        : this.argmaxRunner(null).encode(enc, logits, b, true);
    enc.copyBufferToBuffer(out, 0, read, 0, b * 4);
    this.first = {out, read, b};
    stepQueueStats.picks++;
    stepQueueStats.firstWithPrefill++;
  }

  /** Whether encodeFirst ran and submitFirst has not yet. */
  get firstPicked(): boolean {
    return this.first != null;
  }

  /**
   * After encodeFirst's submit: with `feed`, queues the step feeding the first picks to `state`
   * (the ids copied on the GPU from the pick's output, in the step's own single submit; greedy:
   * that step picks its successor in its own plan, as submit's steps do); resolves like submit().
   * The read-back is mapped before that step is submitted: nothing waits for it to read the picks.
   */
  submitFirst(state: GenerationState, feed: boolean): QueuedPick {
    if (this.disposed) throw new Error('StepQueue: disposed');
    const first = this.first;
    if (first == null) throw new Error('StepQueue: no first pick encoded');
    this.first = null;
    const {out, read, b} = first;
    if (state.batchSize !== b) throw new Error(`StepQueue: a state of ${state.batchSize} rows for ${b} picks`);
    const eng = feed ? fusedDecoderFor(this.model, b) : null;
    const mapping = read.mapAsync(GPUMapMode.READ);
    if (eng != null) {
      stepQueueStats.queuedSteps++;
      state.fusedStepAhead(eng, (enc, stepBuf, at) => enc.copyBufferToBuffer(out, 0, stepBuf, at, b * 4), {
        idsReady: true,
        argmax: this.sampler == null && inPlanArgmax(),
      });
    }
    tracePhase('pick.submit');
    return {ids: this.readBack(mapping, read, b), fed: eng != null};
  }

  /**
   * The argmax runner of a greedy pick: that of the engine the pick's step goes to (eng: made for
   * the state's rows), else that of the engine the queue was made with while it lives (room for
   * all its rows), else the queue's own: rows that leave the batch make engines for fewer rows,
   * and an engine retired for them disposes its runner.
   */
  private argmaxRunner(eng: FusedDecoder | null): RowArgmaxRunner {
    if (eng != null) return argmaxFor(eng, this.model.config.vocab_size);
    if (!this.argmax!.isDisposed) return this.argmax!;
    this.spare ??= new RowArgmaxRunner(this.device, this.model.config.vocab_size, this.b);
    return this.spare;
  }

  /** The ring's next read-back buffer (made on its first use). */
  private nextRead(): GPUBuffer {
    const i = this.next;
    this.next = (i + 1) % RING;
    this.ring[i] ??= this.device.createBuffer({
      size: Math.ceil((this.b * 4) / 16) * 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `step queue read ${i}`,
    });
    return this.ring[i];
  }

  /** Counts a pick in flight until its ids are read (stats: ahead, maxInFlight). */
  private async readBack(mapping: Promise<void>, read: GPUBuffer, b: number): Promise<Int32Array> {
    if (this.inFlight > 0) stepQueueStats.ahead++;
    this.inFlight++;
    stepQueueStats.maxInFlight = Math.max(stepQueueStats.maxInFlight, this.inFlight);
    try {
      await mapping;
      const ids = new Int32Array(read.getMappedRange(0, b * 4).slice(0));
      read.unmap();
      return ids;
    } finally {
      this.inFlight--;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.ring) b.destroy();
    this.spare?.dispose();
  }
}
