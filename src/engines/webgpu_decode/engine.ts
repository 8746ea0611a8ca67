/// <reference types="@webgpu/types" />
/**
 * The fused WebGPU decode engine: one token step of the whole model as ~5 custom WGSL dispatches
 * per layer (plan.ts), encoded into one command encoder and submitted once, with pipelines and
 * bind groups made once per (model, batch size) and reused every step.
 *   const eng = new FusedDecoder(model, 1);
 *   eng.importLayers(state.layers);              // GenerationState layout -> engine buffers
 *   const next = eng.step([651], [7]);           // ids, positions per row -> logits [b, V] (the caller owns it)
 *   eng.stepAhead([8], (enc, stepBuf, at) => enc.clearBuffer(stepBuf, at, 4));   // ids written on the GPU (here: token 0)
 *   const layers = eng.exportLayers();           // engine buffers -> new GenerationState tensors
 *   eng.importRow(0, state.layers);              // one row of a state into row 0, the other rows untouched
 *   const wide = new FusedDecoder(model, 2, {tuningRows: 8});   // rows summed as in an 8-row engine
 *
 * It binds the model's weight tensors' own GPU buffers (tfjs-backend-webgpu's tensorMap resource;
 * nothing copied but the few small vectors packed per layer), and owns the decoding state: per
 * recurrent layer the conv history [b, w-1, e] and h [b, e] (the GenerationState layout, updated
 * in place), per attention layer a ring of W+1 slots of k, v [b, W+1, K, hd] and their validity
 * [b, W+1]: slot `head` receives the new token's key and value, every slot is attended, and the
 * W slots other than the next `head` are the state's window (oldest first from head + 1).
 *
 * Shape letters: b batch rows, V vocab_size, e lru_width, w conv1d_width, W attention window,
 * K key/value heads, hd head_dim.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerState} from '../../../layers/model_layers';
import type {DecodeModelView} from './model_view';
import {buildPlan, LayerBuffers, PlannedDispatch} from './plan';
import {StepLayout, wgslBindings} from './shaders';
import {flushTf, gpuBufferOf, newGpuTensor, resourceOf, WebGPUBackendLike, webgpuBackend} from './tfjs_webgpu';

export type {WebGPUBackendLike} from './tfjs_webgpu';

/** A dispatch ready to encode: pipeline, bind group, grid. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  bind: GPUBindGroup;
  grid: [number, number, number];
  name: string;
  bytes: number;
}

/**
 * What the fused prefill engine (src/engines/webgpu_prefill) writes into: the state's buffers,
 * the x [b, d] the head reads, the ring pointers (the slots the next token goes to).
 */
export interface PrefillTarget {
  readonly layers: readonly LayerBuffers[];
  readonly x: GPUBuffer;
  /** Attention ring slots (W + 1). */
  readonly slots: number;
  readonly head: number;
  readonly convNext: number;
}

/** One dispatch's GPU time in a profiled step, and the bytes of weights / cache it must read. */
export interface DispatchTiming {
  name: string;
  ms: number;
  bytes: number;
}

/** Options of an engine. */
export interface FusedDecoderOptions {
  /**
   * Build the kernels as for an engine of this many rows (>= B; default B): the GEMV threads and
   * load width and the RG-LRU input slices are those of tuningRows rows, so that each row's sums
   * run in the same order whatever B. Engines of 1..tuningRows rows made with the same value then
   * give a row bit for bit the same logits and state (src/serve holds its batch in such engines).
   */
  tuningRows?: number;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export class FusedDecoder {
  readonly B: number;
  /** The device the engine's buffers and pipelines belong to. */
  readonly device: GPUDevice;
  private readonly backend: WebGPUBackendLike;
  private readonly dispatches: Dispatch[] = [];
  private readonly owned: GPUBuffer[] = [];
  /**
   * Every weight tensor bound, with the buffer it had: a change (reassigned variable, disposed
   * model) makes the engine stale.
   */
  private readonly bound: {t: () => tf.Tensor; dataId: object; buffer: unknown}[] = [];
  private readonly layerBufs: LayerBuffers[] = [];
  private readonly stepBuf: GPUBuffer;
  private readonly logitsBuf: GPUBuffer;
  private readonly xBuf: GPUBuffer;
  private readonly disposers: (() => void)[] = [];
  /** The greedy pick's dispatches (after the head, when a step asks for them). */
  private readonly argmaxDispatches: Dispatch[] = [];
  private readonly idsBuf: GPUBuffer;
  /** Whether the last step picked greedily (ids in stepBuf and idsBuf) and nothing has touched them since. */
  private greedyReady = false;
  /** The next step's dispatches, encoded ahead (run()), and whether they include the greedy pick. */
  private nextDispatches: GPUCommandBuffer | null = null;
  private nextArgmax = false;
  private readonly step_: StepLayout;
  private readonly invFreq: Float32Array;
  private readonly S: number; // ring slots (W + 1)
  private head: number; // the ring slot the next token's key goes to
  private convNext: number; // the conv ring slot the next token's input goes to
  private disposed = false;
  /** Set when the device reported an error about this engine's pipelines or bindings. */
  failed: string | null = null;
  /** The GenerationState whose layers live in this engine now (see src/generation/state.ts). */
  owner: {detachFused(): void} | null = null;

  /** The rows the kernels were tuned for (see FusedDecoderOptions). */
  readonly tuningRows: number;

  constructor(
    readonly model: DecodeModelView,
    B: number,
    opts: FusedDecoderOptions = {},
  ) {
    this.B = B;
    this.tuningRows = opts.tuningRows ?? B;
    this.backend = webgpuBackend();
    this.device = this.backend.device;
    const c = model.config;
    this.S = c.attention_window_size + 1;
    this.head = c.attention_window_size;
    this.convNext = c.conv1d_width - 1;
    const rot = c.rotary_dim;
    this.invFreq = Float32Array.from({length: rot / 2}, (_, j) => 1 / c.rope_theta ** ((2 * j) / rot));
    // Shader or binding errors surface asynchronously: caught here, they disable the engine.
    this.device.pushErrorScope('validation');
    let built = false;
    try {
      // Pre-encoded copies that pack small per-layer vectors (biases, conv taps).
      const encoder = this.device.createCommandEncoder();
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      const plan = buildPlan(
        model,
        B,
        {
          limits: this.device.limits,
          encoder,
          own: (floats) => {
            const b = this.device.createBuffer({size: Math.max(16, Math.ceil((floats * 4) / 16) * 16), usage});
            this.owned.push(b);
            return b;
          },
          weight: (get) => this.buf(get),
          constant: (words) => {
            const b = this.device.createBuffer({size: Math.max(16, Math.ceil(words.byteLength / 16) * 16), usage});
            this.owned.push(b);
            this.device.queue.writeBuffer(b, 0, new Uint32Array(words));
            return b;
          },
        },
        {tuningRows: this.tuningRows},
      );
      this.step_ = plan.stepLayout;
      this.stepBuf = plan.stepBuf;
      this.logitsBuf = plan.logitsBuf;
      this.xBuf = plan.xBuf;
      this.idsBuf = plan.idsBuf;
      this.layerBufs.push(...plan.layers);
      for (const d of plan.dispatches) this.dispatches.push(this.make(d));
      for (const d of plan.argmax) this.argmaxDispatches.push(this.make(d));
      flushTf(this.backend);
      this.device.queue.submit([encoder.finish()]);
      built = true;
    } finally {
      const errors = this.device.popErrorScope();
      if (built) {
        void errors.then((err) => {
          if (err == null) return;
          this.failed = err.message;
          console.error(`fused WebGPU decode disabled: ${err.message}`);
        });
      } else {
        void errors.catch(() => undefined);
        this.dispose();
      }
    }
  }

  /** GPU dispatches per token step. */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** Names of the dispatches, in order (diagnostics). */
  get dispatchNames(): string[] {
    return this.dispatches.map((d) => d.name);
  }

  /** Whether every bound weight still has the buffer it was bound with. */
  isCurrent(): boolean {
    if (this.disposed) return false;
    for (const b of this.bound) {
      let t: tf.Tensor;
      try {
        t = b.t();
      } catch {
        return false;
      }
      if (t.isDisposed || t.dataId !== b.dataId) return false;
      if (resourceOf(this.backend, t) !== b.buffer) return false;
    }
    return true;
  }

  /** Copies a GenerationState's layers (tensors of b rows) into the engine; the tensors stay the caller's. */
  importLayers(layers: LayerState[]): void {
    this.check();
    const B = this.B,
      c = this.model.config,
      W = c.attention_window_size,
      e = c.lru_width,
      w = c.conv1d_width;
    this.greedyReady = false;
    const enc = this.device.createCommandEncoder();
    layers.forEach((s, i) => {
      const lb = this.layerBufs[i];
      if (lb.kind === 'recurrent') {
        if (!('rnn' in s)) throw new Error(`fused decode: layer ${i} is recurrent, its state is not`);
        const t = s;
        if (t.rnn.shape[0] !== B) throw new Error(`fused decode: state of ${t.rnn.shape[0]} rows, engine of ${B}`);
        // History entries (oldest first) into ring slots 0 .. w-2; the next input goes to slot w-1.
        const hist = (w - 1) * e;
        if (hist > 0) {
          const conv = gpuBufferOf(this.backend, t.conv);
          for (let b = 0; b < B; b++) enc.copyBufferToBuffer(conv, b * hist * 4, lb.st, b * w * e * 4, hist * 4);
        }
        enc.copyBufferToBuffer(gpuBufferOf(this.backend, t.rnn), 0, lb.st, B * w * e * 4, B * e * 4);
      } else {
        if (!('k' in s)) throw new Error(`fused decode: layer ${i} is an attention layer, its state is not`);
        const t = s;
        const row = t.k.size / B; // W * K * hd
        const k = gpuBufferOf(this.backend, t.k),
          v = gpuBufferOf(this.backend, t.v);
        const valid = gpuBufferOf(this.backend, t.valid);
        const ringRow = (row / W) * this.S;
        for (let b = 0; b < B; b++) {
          enc.copyBufferToBuffer(k, b * row * 4, lb.k, b * ringRow * 4, row * 4);
          enc.copyBufferToBuffer(v, b * row * 4, lb.v, b * ringRow * 4, row * 4);
          enc.copyBufferToBuffer(valid, b * W * 4, lb.valid, b * this.S * 4, W * 4);
        }
      }
    });
    this.head = W;
    this.convNext = w - 1;
    flushTf(this.backend);
    this.device.queue.submit([enc.finish()]);
  }

  /**
   * Copies row `fromRow` of a GenerationState's layers (tensors of any row count) into row `slot`
   * of the engine, leaving the other rows as they are: a sequence joins a running batch. Its
   * window goes into the ring in the order the engine's other rows use now (oldest first from
   * head + 1, conv history from the next conv slot + 1), so that the next step treats it as
   * exportLayers / importLayers would. The tensors stay the caller's.
   */
  importRow(slot: number, layers: LayerState[], fromRow = 0): void {
    this.check();
    const c = this.model.config,
      W = c.attention_window_size,
      S = this.S,
      e = c.lru_width,
      w = c.conv1d_width;
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.B)
      throw new RangeError(`fused decode: slot ${slot} outside [0, ${this.B})`);
    if (layers.length !== this.layerBufs.length)
      throw new Error(`fused decode: ${layers.length} layers of state, the engine has ${this.layerBufs.length}`);
    this.greedyReady = false;
    const enc = this.device.createCommandEncoder();
    // Window entry j (oldest first) goes to ring slot (head + 1 + j) mod S: at most two runs.
    const first = (this.head + 1) % S;
    const n1 = Math.min(W, S - first);
    const runs: [number, number, number][] = [[0, first, n1]]; // [from index, to slot, count]
    if (n1 < W) runs.push([n1, 0, W - n1]);
    layers.forEach((s, i) => {
      const lb = this.layerBufs[i];
      if (lb.kind === 'recurrent') {
        if (!('rnn' in s)) throw new Error(`fused decode: layer ${i} is recurrent, its state is not`);
        const rows = s.rnn.shape[0];
        if (!Number.isInteger(fromRow) || fromRow < 0 || fromRow >= rows)
          throw new RangeError(`fused decode: row ${fromRow} outside a state of ${rows} rows`);
        if (w > 1) {
          const conv = gpuBufferOf(this.backend, s.conv);
          // History entry k (oldest first) into ring slot convNext + 1 + k; convNext takes the next input.
          for (let k = 0; k < w - 1; k++) {
            const to = (this.convNext + 1 + k) % w;
            enc.copyBufferToBuffer(conv, (fromRow * (w - 1) + k) * e * 4, lb.st, (slot * w + to) * e * 4, e * 4);
          }
        }
        const rnn = gpuBufferOf(this.backend, s.rnn);
        enc.copyBufferToBuffer(rnn, fromRow * e * 4, lb.st, (this.B * w + slot) * e * 4, e * 4);
      } else {
        if (!('k' in s)) throw new Error(`fused decode: layer ${i} is an attention layer, its state is not`);
        const rows = s.k.shape[0];
        if (!Number.isInteger(fromRow) || fromRow < 0 || fromRow >= rows)
          throw new RangeError(`fused decode: row ${fromRow} outside a state of ${rows} rows`);
        const per = s.k.size / rows / W; // K * hd: one ring slot
        const k = gpuBufferOf(this.backend, s.k),
          v = gpuBufferOf(this.backend, s.v),
          valid = gpuBufferOf(this.backend, s.valid);
        for (const [from, to, n] of runs) {
          if (n === 0) continue;
          const src = (fromRow * W + from) * per * 4,
            dst = (slot * S + to) * per * 4;
          enc.copyBufferToBuffer(k, src, lb.k, dst, n * per * 4);
          enc.copyBufferToBuffer(v, src, lb.v, dst, n * per * 4);
          enc.copyBufferToBuffer(valid, (fromRow * W + from) * 4, lb.valid, (slot * S + to) * 4, n * 4);
        }
      }
    });
    flushTf(this.backend);
    this.device.queue.submit([enc.finish()]);
  }

  /** New tensors holding the engine's state in the GenerationState layout. */
  exportLayers(): LayerState[] {
    this.check();
    const B = this.B,
      c = this.model.config,
      W = c.attention_window_size,
      S = this.S;
    const K = c.num_key_value_heads,
      hd = c.head_dim,
      e = c.lru_width,
      w = c.conv1d_width;
    const enc = this.device.createCommandEncoder();
    const made: tf.Tensor[] = [];
    const fresh = (shape: number[]) => {
      const {tensor, buffer} = newGpuTensor(this.backend, shape);
      made.push(tensor);
      return {tensor, buffer};
    };
    // Ring slots oldest first: head + 1, ..., S - 1, 0, ..., head - 1.
    const runs: [number, number, number][] = []; // [from slot, to index, count]
    const first = (this.head + 1) % S;
    const n1 = Math.min(W, S - first);
    runs.push([first, 0, n1]);
    if (n1 < W) runs.push([0, n1, W - n1]);
    const layers = this.layerBufs.map((lb): LayerState => {
      if (lb.kind === 'recurrent') {
        const conv = fresh([B, w - 1, e]),
          rnn = fresh([B, e]);
        // History entry k (oldest first) is ring slot convNext + 1 + k.
        for (let b = 0; b < B; b++) {
          for (let k = 0; k < w - 1; k++) {
            const slot = (this.convNext + 1 + k) % w;
            enc.copyBufferToBuffer(lb.st, (b * w + slot) * e * 4, conv.buffer, (b * (w - 1) + k) * e * 4, e * 4);
          }
        }
        enc.copyBufferToBuffer(lb.st, B * w * e * 4, rnn.buffer, 0, B * e * 4);
        return {conv: conv.tensor, rnn: rnn.tensor};
      }
      const k = fresh([B, W, K, hd]),
        v = fresh([B, W, K, hd]),
        valid = fresh([B, W]);
      const slot = K * hd;
      for (let b = 0; b < B; b++) {
        for (const [from, to, n] of runs) {
          if (n === 0) continue;
          enc.copyBufferToBuffer(lb.k, (b * S + from) * slot * 4, k.buffer, (b * W + to) * slot * 4, n * slot * 4);
          enc.copyBufferToBuffer(lb.v, (b * S + from) * slot * 4, v.buffer, (b * W + to) * slot * 4, n * slot * 4);
          enc.copyBufferToBuffer(lb.valid, (b * S + from) * 4, valid.buffer, (b * W + to) * 4, n * 4);
        }
      }
      return {k: k.tensor, v: v.tensor, valid: valid.tensor};
    });
    flushTf(this.backend);
    this.device.queue.submit([enc.finish()]);
    return layers;
  }

  /** The buffers and ring pointers the prefill engine writes the state into (see adoptPrefill). */
  prefillTarget(): PrefillTarget {
    this.check();
    return {layers: this.layerBufs, x: this.xBuf, slots: this.S, head: this.head, convNext: this.convNext};
  }

  /** Zeroes the state (the state before any token), in `enc`. */
  clearState(enc: GPUCommandEncoder): void {
    this.check();
    this.greedyReady = false;
    for (const lb of this.layerBufs) {
      for (const b of lb.kind === 'recurrent' ? [lb.st] : [lb.k, lb.v, lb.valid]) enc.clearBuffer(b);
    }
  }

  /** The final norm + head dispatches: x [b, d] -> logits (read by newLogits). */
  get headDispatches(): readonly Dispatch[] {
    this.greedyReady = false; // whoever encodes them overwrites the logits
    // 'head', its pieces 'head.1', its matmuls 'head@mm', 'head@mm-sum' (batched_matmul.ts).
    return this.dispatches.filter((d) => /^head($|[.@])/.test(d.name));
  }

  /** A new tensor [b, V] that `enc` fills with the logits buffer (after the head dispatches). */
  newLogits(enc: GPUCommandEncoder): tf.Tensor {
    this.check();
    const B = this.B,
      V = this.model.config.vocab_size;
    const out = newGpuTensor(this.backend, [B, V]);
    enc.copyBufferToBuffer(this.logitsBuf, 0, out.buffer, 0, B * V * 4);
    return out.tensor;
  }

  /** After a prefill chunk wrote n tokens into the state: the ring pointers move on by n. */
  adoptPrefill(n: number): void {
    this.check();
    this.greedyReady = false;
    this.head = (this.head + n) % this.S;
    this.convNext = (this.convNext + n) % this.model.config.conv1d_width;
  }

  /** Runs f when the engine is disposed (an engine built on this one frees its buffers). */
  onDispose(f: () => void): void {
    this.disposers.push(f);
  }

  /** One token per row at the given positions: runs every layer, returns the logits [b, V] (a new tensor). */
  step(ids: number[], positions: number[]): tf.Tensor {
    return this.run(ids, positions, null);
  }

  /**
   * A step (it advances the state like step()) with every dispatch in a compute pass of its own
   * and GPU timestamps around it: per-dispatch times, or null without 'timestamp-query'. The pass
   * boundaries add their own cost, so the sum exceeds a plain step's time.
   */
  async profileStep(
    ids: number[],
    positions: number[],
  ): Promise<{logits: tf.Tensor; timings: DispatchTiming[] | null}> {
    if (!this.device.features.has('timestamp-query')) return {logits: this.step(ids, positions), timings: null};
    const n = this.dispatches.length;
    const querySet = this.device.createQuerySet({type: 'timestamp', count: 2 * n});
    const resolve = this.device.createBuffer({
      size: 16 * n,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.device.createBuffer({size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const logits = this.run(ids, positions, {querySet, resolve, read});
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    [read, resolve].forEach((b) => b.destroy());
    querySet.destroy();
    const timings = this.dispatches.map((d, i) => ({
      name: d.name,
      ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6,
      bytes: d.bytes,
    }));
    return {logits, timings};
  }

  /**
   * A step whose ids never come to the host: `encodeIds` encodes, into the command buffer that
   * runs first, whatever computes them (a pick from the previous step's logits, which are
   * logitsBuffer's contents then) and copies them as u32 into `stepBuf` at byte `idsOffset` (b
   * words); the host writes the rest of the step buffer (positions, ring slots, RoPE tables),
   * which it knows ahead. The two are submitted separately, so that a read-back copied there
   * resolves as soon as the ids exist, while this step still runs. No logits tensor is made: the
   * logits stay in logitsBuffer until the next step (logitsTensor() copies them out). Ids are
   * not checked here: the caller writes ids in [0, V) (WGSL's bounds rules keep others in the buffers).
   *
   * opts.argmax: the step also picks each row's next token greedily, on the GPU after the head
   * (first index of the largest logit, -1 for a row of NaN), into the step buffer's ids, where
   * the next stepAhead finds them (its encodeIds then writes nothing there), and into
   * `greedyIds` for the host to copy out. opts.afterIds runs between the two submits (a
   * read-back mapped there resolves when the ids' commands are done, not the step's).
   */
  stepAhead(
    positions: number[],
    encodeIds: (enc: GPUCommandEncoder, stepBuf: GPUBuffer, idsOffset: number) => void,
    opts: {argmax?: boolean; afterIds?: () => void} = {},
  ): void {
    this.check();
    if (positions.length !== this.B) throw new Error(`fused decode: ${positions.length} positions for ${this.B} rows`);
    const argmax = opts.argmax === true;
    this.writeStep(null, positions);
    flushTf(this.backend);
    const enc = this.device.createCommandEncoder();
    encodeIds(enc, this.stepBuf, this.step_.ids * 4);
    this.device.queue.submit([enc.finish()]);
    opts.afterIds?.();
    const cmd =
      this.nextDispatches != null && this.nextArgmax === argmax ? this.nextDispatches : this.encodeDispatches(argmax);
    this.device.queue.submit([cmd]);
    this.nextDispatches = this.encodeDispatches(argmax);
    this.nextArgmax = argmax;
    this.greedyReady = argmax;
    this.advance();
  }

  /**
   * stepAhead in one submit (the ids' copy and the step's dispatches together): for ids that work
   * submitted earlier has computed (and copied to where they are read back from), such as a pick
   * in a fused prefill's submit, so that nothing waits for this step to read them. opts.argmax:
   * as for stepAhead (the step also picks its successor's ids greedily, into greedyIds).
   */
  stepAheadJoined(
    positions: number[],
    encodeIds: (enc: GPUCommandEncoder, stepBuf: GPUBuffer, idsOffset: number) => void,
    opts: {argmax?: boolean} = {},
  ): void {
    this.check();
    if (positions.length !== this.B) throw new Error(`fused decode: ${positions.length} positions for ${this.B} rows`);
    const argmax = opts.argmax === true;
    this.writeStep(null, positions);
    flushTf(this.backend);
    const enc = this.device.createCommandEncoder();
    encodeIds(enc, this.stepBuf, this.step_.ids * 4);
    const cmd =
      this.nextDispatches != null && this.nextArgmax === argmax ? this.nextDispatches : this.encodeDispatches(argmax);
    this.device.queue.submit([enc.finish(), cmd]);
    this.nextDispatches = this.encodeDispatches(argmax);
    this.nextArgmax = argmax;
    this.greedyReady = argmax;
    this.advance();
  }

  /**
   * The ids (int32 [b]) the last step picked greedily (stepAhead with argmax), also in the step
   * buffer for the next step; null when the last step did not pick, or anything since
   * (another step, an import, a prefill) made them stale.
   */
  get greedyIds(): GPUBuffer | null {
    return !this.disposed && this.greedyReady ? this.idsBuf : null;
  }

  /** Dispatches of the greedy pick a stepAhead with argmax adds after the head. */
  get argmaxDispatchCount(): number {
    return this.argmaxDispatches.length;
  }

  /** The buffer the last step wrote its logits to (float32 [b, V]); the next step overwrites it. */
  get logitsBuffer(): GPUBuffer {
    this.check();
    return this.logitsBuf;
  }

  /** A new tensor [b, V] holding logitsBuffer's contents now (the caller owns it). */
  logitsTensor(): tf.Tensor {
    this.check();
    const B = this.B,
      V = this.model.config.vocab_size;
    const out = newGpuTensor(this.backend, [B, V]);
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.logitsBuf, 0, out.buffer, 0, B * V * 4);
    flushTf(this.backend);
    this.device.queue.submit([enc.finish()]);
    return out.tensor;
  }

  /** Writes the step buffer: ids (null: zeros, to be overwritten on the GPU), positions, ring slots, RoPE tables. */
  private writeStep(ids: number[] | null, positions: number[]): void {
    const B = this.B,
      V = this.model.config.vocab_size,
      L = this.step_;
    const words = new Uint32Array(L.words);
    const f = new Float32Array(words.buffer);
    if (L.ids + B !== L.pos) throw new Error('fused decode: the step buffer must start with the ids');
    for (let b = 0; b < B; b++) {
      if (ids != null) {
        const id = ids[b];
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
        }
        words[L.ids + b] = id;
      }
      words[L.pos + b] = positions[b];
      // RoPE angles as the tfjs path computes them: float32 position * float32 inverse frequency.
      for (let j = 0; j < this.invFreq.length; j++) {
        const angle = Math.fround(Math.fround(positions[b]) * this.invFreq[j]);
        f[L.cos + b * L.half + j] = Math.cos(angle);
        f[L.sin + b * L.half + j] = Math.sin(angle);
      }
    }
    words[L.slot] = this.head;
    words[L.slot + 1] = this.convNext;
    // Without ids the words before the positions are left as they are (written on the GPU).
    this.device.queue.writeBuffer(this.stepBuf, ids == null ? L.pos * 4 : 0, words, ids == null ? L.pos : 0);
  }

  /** The ring slots after a step. */
  private advance(): void {
    this.head = (this.head + 1) % this.S;
    this.convNext = (this.convNext + 1) % this.model.config.conv1d_width;
  }

  private run(
    ids: number[],
    positions: number[],
    prof: {querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer} | null,
  ): tf.Tensor {
    this.check();
    const B = this.B,
      V = this.model.config.vocab_size;
    if (ids.length !== B || positions.length !== B) throw new Error(`fused decode: ${ids.length} ids for ${B} rows`);
    this.writeStep(ids, positions);
    this.greedyReady = false;
    flushTf(this.backend);
    const cmds: GPUCommandBuffer[] = [];
    if (prof == null) {
      // The dispatches do not depend on the step (its ids and slots are in stepBuf), so they were
      // encoded ahead, while the GPU ran the previous step.
      cmds.push(this.nextDispatches != null && !this.nextArgmax ? this.nextDispatches : this.encodeDispatches(false));
      this.nextDispatches = null;
    }
    const enc = this.device.createCommandEncoder();
    if (prof != null) {
      this.dispatches.forEach((d, i) => {
        const pass = enc.beginComputePass({
          timestampWrites: {querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1},
        });
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bind);
        pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
        pass.end();
      });
      enc.resolveQuerySet(prof.querySet, 0, 2 * this.dispatches.length, prof.resolve, 0);
      enc.copyBufferToBuffer(prof.resolve, 0, prof.read, 0, 16 * this.dispatches.length);
    }
    const out = newGpuTensor(this.backend, [B, V]);
    enc.copyBufferToBuffer(this.logitsBuf, 0, out.buffer, 0, B * V * 4);
    cmds.push(enc.finish());
    this.device.queue.submit(cmds);
    // Encoding the dispatches costs the host time (see bench/results/NOTES.md): done now, it
    // overlaps this step's GPU time.
    if (prof == null) {
      this.nextDispatches = this.encodeDispatches(false);
      this.nextArgmax = false;
    }
    this.advance();
    return out.tensor;
  }

  /** One step's dispatches (and the greedy pick's, with argmax), in one compute pass. */
  private encodeDispatches(argmax: boolean): GPUCommandBuffer {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const d of argmax ? [...this.dispatches, ...this.argmaxDispatches] : this.dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bind);
      pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
    }
    pass.end();
    return enc.finish();
  }

  dispose(): void {
    if (this.disposed) return;
    this.nextDispatches = null;
    this.disposed = true;
    for (const f of this.disposers.splice(0)) f();
    for (const b of this.owned) b.destroy();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private check(): void {
    if (this.disposed) throw new Error('fused decode: the engine has been disposed');
  }

  /** A weight's buffer, recorded so that isCurrent() notices when it changes. */
  private buf(get: () => tf.Tensor): GPUBuffer {
    const t = get();
    const r = gpuBufferOf(this.backend, t);
    this.bound.push({t: get, dataId: t.dataId, buffer: r});
    return r;
  }

  /** The pipeline (cached per device and source) and bind group of a planned dispatch. */
  private make(d: PlannedDispatch): Dispatch {
    let cache = pipelineCache.get(this.device);
    if (cache == null) pipelineCache.set(this.device, (cache = new Map()));
    let pipeline = cache.get(d.code);
    if (pipeline == null) {
      const module = this.device.createShaderModule({code: d.code, label: d.name});
      pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: {module, entryPoint: 'main'},
        label: d.name,
      });
      cache.set(d.code, pipeline);
    }
    const names = wgslBindings(d.code);
    const extra = Object.keys(d.bindings).filter((k) => !names.includes(k));
    if (extra.length > 0) throw new Error(`fused decode: ${d.name}: no binding named ${extra.join(', ')}`);
    const entries = names.map((name, i) => {
      const buffer = d.bindings[name];
      if (buffer == null) throw new Error(`fused decode: ${d.name}: binding ${i} (${name}) missing`);
      return {binding: i, resource: {buffer}};
    });
    const bind = this.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries, label: d.name});
    return {pipeline, bind, grid: d.grid, name: d.name, bytes: d.bytes};
  }
}
