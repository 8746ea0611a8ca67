/**
 * Incremental decoding: a constant-size GenerationState, built by a parallel prefill and advanced
 * one token at a time.
 *   const state = model.prefill([[2, 651, 6037]]);          // or prefill(model, ids, opts)
 *   const {logits} = model.decodeStep(state, [1234]);      // state advanced in place; logits [b, V]
 *
 * Per recurrent layer the state holds the convolution's last w-1 inputs and the RG-LRU state; per
 * attention layer the keys/values of the last W steps with a validity mask; per row the next
 * position; and the logits that predict the next token. Nothing in it grows with the sequence.
 *
 * Padding: only left padding is supported (a row may start with masked steps, never pause), because
 * the attention window counts steps: padding in the middle of a row would push real keys out of it.
 */
import * as tf from '@tensorflow/tfjs';
import {readHeader, readTensor, writeSafetensors} from '../../converters/safetensors';
import type {LayerState} from '../../layers/model_layers';
import {gpuBufferLimits} from '../../ops/gpu_limits';
import type {CausalLMCore} from '../core/model';
import {FusedDecoder, fusedDecoderFor} from '../engines/webgpu_decode';
import {gpuBufferOf, webgpuBackend} from '../engines/webgpu_decode/tfjs_webgpu';
import {fusedPrefillFor} from '../engines/webgpu_prefill';
import {tracePhase} from '../util/host_trace';
import {checkIdRange, IdsLike, idRows} from '../util/ids';
import {checkGpuBuffers, type GpuBufferLimits} from '../util/limits';
import {DEFAULT_PREFILL_CHUNK, defaultPrefillChunk, prefillTensors} from './prefill_chunk';

const FORMAT = 'griffin-generation-state';
const FORMAT_VERSION = '1';

export {DEFAULT_PREFILL_CHUNK};

export interface PrefillOptions {
  /** [b, t]; 1 = token, 0 = padding. Padding must come before a row's first token (left padding). */
  attentionMask?: IdsLike | null;
  /** Continue this state (advanced in place and returned) instead of starting a new one: chat turns. */
  state?: GenerationState | null;
  /** Longest piece of the prompt run at once (default: 512 on host backends, longer on webgpu: prefill_chunk.ts). */
  chunkSize?: number;
  /** The WebGPU adapter's buffer limits the chunk is checked against (default: the running device's; null: none). */
  gpuLimits?: GpuBufferLimits | null;
}

type Tensors = Record<string, tf.Tensor>;

function layerTensors(s: LayerState): tf.Tensor[] {
  return Object.values(s as unknown as Tensors);
}

function mapLayer(s: LayerState, f: (t: tf.Tensor) => tf.Tensor): LayerState {
  return Object.fromEntries(
    Object.entries(s as unknown as Tensors).map(([k, t]) => [k, f(t)]),
  ) as unknown as LayerState;
}

export class GenerationState {
  private layers_: LayerState[] | null;
  /**
   * Set while the fused WebGPU decoder (src/engines/webgpu_decode) holds this state's layers in its own
   * buffers; reading `layers` brings them back as tensors.
   */
  private fused: FusedDecoder | null = null;
  /** Per row: the position id the next real token gets (= real tokens seen so far). */
  positions: number[];
  /**
   * The logits after the last token (null: still in the fused engine's logits buffer, after a
   * step whose ids came from the GPU; `logits` copies them out when asked).
   */
  private logits_: tf.Tensor | null;
  private freed = false;

  constructor(
    readonly model: CausalLMCore,
    layers: LayerState[],
    positions: number[],
    logits: tf.Tensor,
  ) {
    this.layers_ = layers;
    this.positions = positions;
    this.logits_ = logits;
  }

  /** [b, V] float32: the logits after the last token, predicting the next one. */
  get logits(): tf.Tensor {
    if (this.logits_ == null) {
      if (this.fused == null) throw new Error('this GenerationState has no logits');
      this.logits_ = tf.keep(this.fused.logitsTensor());
    }
    return this.logits_;
  }
  set logits(t: tf.Tensor) {
    this.logits_ = t;
  }

  /** Disposes the logits held (if any) and holds `t` instead. Internal: decodeStep calls it. */
  replaceLogits(t: tf.Tensor): void {
    this.logits_?.dispose();
    this.logits_ = t;
  }

  /** A state before any token (b rows): prefill onto it as onto any state. */
  static empty(model: CausalLMCore, batchSize = 1): GenerationState {
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new Error(`batchSize must be an integer >= 1, got ${batchSize}`);
    return new GenerationState(
      model,
      model.blocks.map((blk) => blk.initState(batchSize)),
      Array(batchSize).fill(0),
      tf.zeros([batchSize, model.config.vocab_size]),
    );
  }

  /** Per layer: {conv, rnn} (recurrent) or {k, v, valid} (attention); row i of each is batch row i. */
  get layers(): LayerState[] {
    if (this.fused != null) this.detachFused();
    return this.layers_!;
  }
  set layers(layers: LayerState[]) {
    this.releaseFused();
    this.layers_ = layers;
  }

  /** Takes the layers back from the fused decoder as tensors (it keeps nothing of this state). */
  detachFused(): void {
    const eng = this.fused;
    if (eng == null) return;
    if (this.logits_ == null) this.logits_ = tf.keep(eng.logitsTensor());
    this.layers_ = eng.exportLayers();
    // The state owns them whatever tidy scope asked for them (as runChunk keeps its layers).
    this.layers_.flatMap(layerTensors).forEach((t) => tf.keep(t));
    this.releaseFused();
  }

  private releaseFused(): void {
    if (this.fused == null) return;
    if (this.fused.owner === this) this.fused.owner = null;
    this.fused = null;
  }

  /**
   * One fused decode step: the layers move into the engine on the first step (and stay there
   * while decoding goes on); returns the logits [b, V]. Internal: decodeStep calls it.
   */
  fusedStep(eng: FusedDecoder, ids: number[]): tf.Tensor {
    this.enterFused(eng);
    return eng.step(ids, this.positions);
  }

  /**
   * One fused decode step whose ids are written on the GPU (FusedDecoder.stepAhead: `encodeIds`
   * computes them, typically from this state's logits, and copies them into the step buffer);
   * advances the positions. The logits stay in the engine until someone reads `logits`. opts:
   * see FusedDecoder.stepAhead (argmax: the step also picks the next ids greedily on the GPU).
   * Internal: the queued generation loop (src/generation/step_queue.ts) calls it.
   */
  fusedStepAhead(
    eng: FusedDecoder,
    encodeIds: (enc: GPUCommandEncoder, stepBuf: GPUBuffer, idsOffset: number) => void,
    opts: {
      argmax?: boolean;
      afterIds?: () => void;
      /** The ids were computed by work already submitted (FusedDecoder.stepAheadJoined: one submit; no afterIds). */
      idsReady?: boolean;
    } = {},
  ): void {
    this.check();
    this.enterFused(eng);
    if (opts.idsReady === true) eng.stepAheadJoined(this.positions, encodeIds, {argmax: opts.argmax});
    else eng.stepAhead(this.positions, encodeIds, opts);
    this.logits_?.dispose();
    this.logits_ = null;
    this.positions = this.positions.map((p) => p + 1);
  }

  /**
   * The ids (GPU int32 [b]) the fused engine's last step picked greedily from this state's
   * logits (FusedDecoder.greedyIds), or null. Internal: step_queue.ts reads them back.
   */
  fusedGreedyIds(): GPUBuffer | null {
    return this.fused != null && this.fused.owner === this ? this.fused.greedyIds : null;
  }

  /**
   * Where the logits are on the GPU (webgpu backend): the engine's buffer (`engine`: it lives on
   * and is overwritten by the next step) or the logits tensor's. Tfjs work still encoded is not
   * yet submitted: the caller flushes it before using the buffer.
   */
  gpuLogits(): {buffer: GPUBuffer; engine: boolean} {
    this.check();
    if (this.logits_ == null && this.fused != null) return {buffer: this.fused.logitsBuffer, engine: true};
    return {buffer: gpuBufferOf(webgpuBackend(), this.logits), engine: false};
  }

  /**
   * The logits are now the fused engine's (its logits buffer, which a fused prefill's head just
   * wrote): the tensor held is dropped, `logits` copies them out when asked. Internal.
   */
  logitsInEngine(): void {
    this.check();
    if (this.fused == null) throw new Error('logitsInEngine: the state does not live in a fused engine');
    this.logits_?.dispose();
    this.logits_ = null;
  }

  /** Moves the layers into the fused decoder's buffers, unless they are there already. Internal. */
  enterFused(eng: FusedDecoder): void {
    if (this.fused === eng) return;
    const layers = this.layers; // from another engine, if any
    if (eng.owner != null && eng.owner !== this) eng.owner.detachFused();
    eng.importLayers(layers);
    tf.dispose(layers.flatMap(layerTensors));
    this.layers_ = null;
    this.fused = eng;
    eng.owner = this;
  }

  /**
   * A state whose layers live in the fused decoder already (a fused prefill wrote them there);
   * logits null: they are in the engine's logits buffer, copied out when someone reads `logits`.
   * Internal.
   */
  static inFused(
    model: CausalLMCore,
    eng: FusedDecoder,
    positions: number[],
    logits: tf.Tensor | null,
  ): GenerationState {
    const s = new GenerationState(model, [], positions, logits as tf.Tensor);
    if (eng.owner != null && eng.owner !== s) eng.owner.detachFused();
    s.layers_ = null;
    s.fused = eng;
    eng.owner = s;
    return s;
  }

  get batchSize(): number {
    return this.positions.length;
  }
  get isDisposed(): boolean {
    return this.freed;
  }

  /** Bytes held on the backend: the same after 10 tokens as after 100k. */
  get byteSize(): number {
    return this.tensors().reduce((s, t) => s + t.size * 4, 0);
  }

  /** Every tensor the state owns. */
  tensors(): tf.Tensor[] {
    return [...this.layers.flatMap(layerTensors), this.logits];
  }

  /** An independent copy (fork): advancing one does not touch the other. Cheap: data is shared until replaced. */
  clone(): GenerationState {
    this.check();
    return new GenerationState(
      this.model,
      this.layers.map((s) => mapLayer(s, (t) => tf.clone(t))),
      [...this.positions],
      tf.clone(this.logits),
    );
  }

  /** A new state of the given rows, in that order (a row may repeat: n samples from one prompt). */
  select(rows: number[]): GenerationState {
    this.check();
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batchSize)
        throw new RangeError(`row ${r} is outside the batch [0, ${this.batchSize})`);
    }
    if (rows.length === 0) throw new Error('select needs at least one row');
    const idx = tf.tensor1d(rows, 'int32');
    try {
      return new GenerationState(
        this.model,
        this.layers.map((s) => mapLayer(s, (t) => tf.gather(t, idx, 0))),
        rows.map((r) => this.positions[r]),
        tf.gather(this.logits, idx, 0),
      );
    } finally {
      idx.dispose();
    }
  }

  /** Stacks states of the same model along the batch (row order kept). */
  static concat(states: GenerationState[]): GenerationState {
    if (states.length === 0) throw new Error('concat needs at least one state');
    const model = states[0].model;
    for (const s of states) {
      s.check();
      if (s.model !== model) throw new Error('concat: states belong to different models');
    }
    if (states.length === 1) return states[0].clone();
    const layers = states[0].layers.map((l, i) => {
      const keys = Object.keys(l);
      return Object.fromEntries(
        keys.map((k) => [
          k,
          tf.concat(
            states.map((s) => (s.layers[i] as unknown as Tensors)[k]),
            0,
          ),
        ]),
      ) as unknown as LayerState;
    });
    return new GenerationState(
      model,
      layers,
      states.flatMap((s) => s.positions),
      tf.concat(
        states.map((s) => s.logits),
        0,
      ),
    );
  }

  /** Moves `other`'s contents into this object (disposing this one's): how in-place updates happen. */
  replaceWith(other: GenerationState): void {
    if (other === this) return;
    if (other.model !== this.model) throw new Error('replaceWith: states belong to different models');
    this.dispose();
    this.layers = other.layers;
    this.positions = other.positions;
    this.logits = other.logits;
    this.freed = other.freed;
    other.freed = true; // its tensors now belong to this object
  }

  dispose(): void {
    if (this.freed) return;
    if (this.fused != null) {
      this.releaseFused();
      this.logits_?.dispose();
    } else {
      tf.dispose(this.tensors());
    }
    this.freed = true;
  }

  /**
   * Writes the state as one safetensors file: tensors `layers.{i}.{conv,rnn,k,v,valid}` and `logits`,
   * positions and the model's shape in the metadata.
   */
  async save(file: string): Promise<void> {
    this.check();
    const tensors = await Promise.all([
      ...this.layers.flatMap((s, i) =>
        Object.entries(s as unknown as Tensors).map(async ([k, t]) => ({
          name: `layers.${i}.${k}`,
          shape: t.shape as number[],
          data: (await t.data()) as Float32Array,
        })),
      ),
      (async () => ({
        name: 'logits',
        shape: this.logits.shape as number[],
        data: (await this.logits.data()) as Float32Array,
      }))(),
    ]);
    writeSafetensors(file, tensors, {
      format: FORMAT,
      version: FORMAT_VERSION,
      positions: JSON.stringify(this.positions),
      model: JSON.stringify(modelSignature(this.model)),
    });
  }

  /** Reads a file written by save() for `model` (or one of the same shape); fails on any mismatch. */
  static async load(file: string, model: CausalLMCore): Promise<GenerationState> {
    const {tensors: metas, metadata} = readHeader(file);
    const fail = (why: string): never => {
      throw new Error(`${file}: ${why}`);
    };
    if (metadata.format !== FORMAT) fail(`not a generation state (metadata format ${JSON.stringify(metadata.format)})`);
    if (metadata.version !== FORMAT_VERSION)
      fail(`generation state version ${metadata.version}, this package reads ${FORMAT_VERSION}`);
    let positions: unknown;
    try {
      positions = JSON.parse(metadata.positions ?? '');
    } catch {
      fail('bad positions metadata');
    }
    if (!Array.isArray(positions) || positions.length === 0 || !positions.every((p) => Number.isInteger(p) && p >= 0)) {
      fail('bad positions metadata');
    }
    const b = (positions as number[]).length;
    const want = JSON.stringify(modelSignature(model));
    if (metadata.model !== want) fail(`saved for a model of another shape (${metadata.model}, this one is ${want})`);
    const created: tf.Tensor[] = [];
    const read = (name: string, shape: number[]): tf.Tensor => {
      const meta = metas.get(name) ?? fail(`tensor ${JSON.stringify(name)} missing`);
      if (meta.shape.length !== shape.length || meta.shape.some((d, i) => d !== shape[i])) {
        fail(`tensor ${JSON.stringify(name)} has shape [${meta.shape}], expected [${shape}]`);
      }
      const t = tf.tensor(readTensor(meta) as Float32Array, shape, 'float32');
      created.push(t);
      return t;
    };
    try {
      const layers = model.blocks.map((block, i) => {
        const empty = block.initState(1);
        const shapes = Object.fromEntries(
          Object.entries(empty as unknown as Tensors).map(([k, t]) => [k, [b, ...t.shape.slice(1)]]),
        );
        tf.dispose(layerTensors(empty));
        return Object.fromEntries(
          Object.entries(shapes).map(([k, shape]) => [k, read(`layers.${i}.${k}`, shape)]),
        ) as unknown as LayerState;
      });
      const logits = read('logits', [b, model.config.vocab_size]);
      const expected = model.blocks.reduce((n, blk) => n + (blk.blockType === 'recurrent' ? 2 : 3), 1);
      if (metas.size !== expected) fail(`${metas.size} tensors, expected ${expected}`);
      return new GenerationState(model, layers, positions as number[], logits);
    } catch (e) {
      tf.dispose(created);
      throw e;
    }
  }

  private check(): void {
    if (this.freed) throw new Error('this GenerationState has been disposed');
  }
}

/** What a saved state must agree on with the model that reads it. */
function modelSignature(model: CausalLMCore) {
  const c = model.config;
  return {
    layers: c.layers_block_type,
    vocab: c.vocab_size,
    lru_width: c.lru_width,
    conv1d_width: c.conv1d_width,
    window: c.attention_window_size,
    kv_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
  };
}

/**
 * Runs every layer over one chunk ([b, t] ids with their positions and, for padding, mask) from
 * `layers` (null: start fresh); returns the new layers and only the last step's logits [b, V].
 */
function runChunk(
  model: CausalLMCore,
  ids: number[][],
  positions: number[][],
  mask: number[][] | null,
  layers: LayerState[] | null,
): {logits: tf.Tensor; layers: LayerState[]} {
  const [b, t] = [ids.length, ids[0].length];
  const out = tf.tidy(() => {
    const r = model.forward({
      inputIds: tf.tensor2d(ids, [b, t], 'int32'),
      positionIds: tf.tensor2d(positions, [b, t], 'int32'),
      attentionMask: mask != null ? tf.tensor2d(mask, [b, t], 'int32') : null,
      state: layers,
      returnState: true,
      lastPositionOnly: true,
    });
    return {
      logits: tf.reshape(r.logits, [b, model.config.vocab_size]),
      layers: r.state!,
    } as unknown as tf.TensorContainer;
  }) as unknown as {logits: tf.Tensor; layers: LayerState[]};
  return out;
}

/**
 * Runs a prompt through the model in one parallel pass per chunk and returns the state after it
 * (with opts.state: that state, advanced in place).
 */
export function prefill(model: CausalLMCore, inputIds: IdsLike, opts: PrefillOptions = {}): GenerationState {
  return prefillThen(model, inputIds, opts, null);
}

/**
 * Compiles (in parallel, without blocking: FusedPrefill.prepare) the fused engine's pipelines
 * that prefill(model, inputIds, opts) will run, and makes the engine: generate and stream await
 * it first, so that their prefill pays no compile. Does nothing where prefill runs on tfjs ops.
 */
export async function prefillReady(model: CausalLMCore, inputIds: number[][], opts: PrefillOptions): Promise<void> {
  const b = inputIds.length,
    t = inputIds[0]?.length ?? 0;
  if (b === 0 || t === 0 || tf.getBackend() !== 'webgpu') return;
  const mask = opts.attentionMask != null ? idRows(opts.attentionMask, 'attentionMask', true) : null;
  if (mask?.some((m) => m.includes(0))) return;
  const chunk = opts.chunkSize ?? t;
  if (!Number.isInteger(chunk) || chunk < 1) return; // prefill reports it
  const pre = fusedPrefillFor(model, b, Math.min(chunk, t));
  if (pre == null) return;
  const step = Math.min(chunk, pre.capacity);
  const sizes = new Set([b * Math.min(step, t), b * (t % step || step)]);
  await Promise.all([...sizes].map((M) => pre.prepare(M)));
}

/**
 * Work encoded after a fused prefill's last chunk, into the same submit: `enc` and the decode
 * engine's logits buffer [b, V] that the chunk's head has written (a pick of the first token).
 */
export type AfterPrefill = (enc: GPUCommandEncoder, logits: GPUBuffer) => void;

/**
 * prefill, with `after` encoded into the fused engine's last submit (generate's first pick, so
 * that prefill, head and pick go to the GPU as one). `after` is not called when the prompt runs
 * on tfjs ops (another backend, padding, ...): the caller then picks from `logits` itself. Internal.
 */
export function prefillThen(
  model: CausalLMCore,
  inputIds: IdsLike,
  opts: PrefillOptions,
  after: AfterPrefill | null,
): GenerationState {
  const prev = opts.state ?? null;
  if (prev != null) {
    if (prev.isDisposed) throw new Error('prefill: the state has been disposed');
    if (prev.model !== model) throw new Error('prefill: the state belongs to another model');
  }
  const rows = idRows(inputIds, 'inputIds', prev != null);
  const b = rows.length,
    t = rows[0].length;
  if (prev != null && prev.batchSize !== b)
    throw new Error(`prefill: the state has ${prev.batchSize} rows, inputIds ${b}`);
  const chunk = opts.chunkSize ?? defaultPrefillChunk(model.config, b);
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunkSize must be an integer >= 1, got ${chunk}`);
  const mask = opts.attentionMask != null ? idRows(opts.attentionMask, 'attentionMask', true) : null;
  const start = prev?.positions ?? Array(b).fill(0);
  if (mask != null) {
    if (mask.length !== b || mask[0].length !== t)
      throw new Error(
        `attentionMask must have shape [${b}, ${t}] like inputIds, got [${mask.length}, ${mask[0].length}]`,
      );
    mask.forEach((m, r) => {
      let seen = start[r] > 0;
      for (const x of m) {
        if (x !== 0 && x !== 1) throw new Error(`attentionMask must hold 0 and 1, got ${x}`);
        if (x === 0 && seen)
          throw new Error(`attentionMask row ${r}: padding after a token; only left padding is supported`);
        if (x === 1) seen = true;
      }
    });
  }
  const ends = start.map((p, r) => p + (mask ? mask[r].reduce((s, x) => s + x, 0) : t));
  const empty = ends.indexOf(0);
  if (empty >= 0) throw new Error(`row ${empty} has no tokens (all padding)`);
  if (t === 0) return prev!;
  if (mask == null || mask.every((m) => !m.includes(0))) {
    const fused = fusedPrefill(model, rows, start, opts.chunkSize ?? t, prev, after);
    if (fused != null) return fused;
  }
  const gpu = opts.gpuLimits !== undefined ? opts.gpuLimits : gpuBufferLimits();
  if (gpu != null)
    checkGpuBuffers(prefillTensors(model.config, b, Math.min(chunk, t)), gpu, 'lower chunkSize or the batch');

  let layers: LayerState[] | null = prev?.layers ?? null;
  let logits: tf.Tensor | null = null;
  const pos = [...start];
  try {
    for (let c0 = 0; c0 < t; c0 += chunk) {
      const c1 = Math.min(t, c0 + chunk),
        tc = c1 - c0;
      const idsC = rows.map((r) => r.slice(c0, c1));
      const maskC = mask?.map((m) => m.slice(c0, c1)) ?? null;
      // Padding's position is irrelevant (it resets nothing: reset = (pos == 0) * mask).
      const posC = idsC.map((_, r) => Array.from({length: tc}, (_, j) => (maskC && !maskC[r][j] ? 0 : pos[r]++)));
      const hasPad = maskC?.some((m) => m.includes(0)) ?? false;
      const out = runChunk(model, idsC, posC, hasPad ? maskC : null, layers);
      // The caller's state stays intact until the whole prompt has gone through.
      if (layers != null && layers !== prev?.layers) tf.dispose(layers.flatMap(layerTensors));
      layers = out.layers;
      logits?.dispose();
      logits = out.logits;
    }
  } catch (e) {
    if (layers != null && layers !== prev?.layers) tf.dispose(layers.flatMap(layerTensors));
    logits?.dispose();
    throw e;
  }
  const next = new GenerationState(model, layers!, ends, logits!);
  if (prev == null) return next;
  prev.replaceWith(next);
  return prev;
}

/**
 * prefill on the fused WebGPU prefill engine (src/engines/webgpu_prefill), or null when it does
 * not apply: the state is written into the fused decoder's buffers (prev's layers moved there
 * first; a fresh state's zeroed in the first chunk's submit), chunk by chunk, one submit each;
 * `after` goes into the last chunk's submit.
 */
function fusedPrefill(
  model: CausalLMCore,
  rows: number[][],
  start: number[],
  chunk: number,
  prev: GenerationState | null,
  after: AfterPrefill | null,
): GenerationState | null {
  const b = rows.length,
    t = rows[0].length;
  const pre = fusedPrefillFor(model, b, Math.min(chunk, t));
  tracePhase('prefill.engine');
  if (pre == null) return null;
  for (const r of rows) checkIdRange(r, model.config.vocab_size);
  const dec = pre.decoder;
  if (prev != null) prev.enterFused(dec);
  else if (dec.owner != null) dec.owner.detachFused(); // a state living there is exported first
  // With `after` (generate's first pick) the logits stay in the engine's buffer: nothing copies
  // [b, V] that only a 4-byte pick reads; the state copies them out if someone asks.
  const lazy = after != null;
  const step = Math.min(chunk, pre.capacity);
  let logits: tf.Tensor | null = null;
  for (let c0 = 0; c0 < t; c0 += step) {
    const c1 = Math.min(t, c0 + step);
    const idsC = rows.map((r) => r.slice(c0, c1));
    const posC = start.map((p) => Array.from({length: c1 - c0}, (_, j) => p + c0 + j));
    const last = c1 === t;
    logits = pre.run(idsC, posC, last, {
      clear: prev == null && c0 === 0,
      logitsInEngine: lazy,
      after: last && after != null ? (enc) => after(enc, dec.logitsBuffer) : undefined,
    });
  }
  const ends = start.map((p) => p + t);
  if (prev == null) return GenerationState.inFused(model, dec, ends, logits);
  if (lazy) prev.logitsInEngine();
  else prev.replaceLogits(logits!);
  prev.positions = ends;
  return prev;
}

/**
 * Feeds one token per row ([b] ids, or [b, 1]) and advances `state` in place. Returns the new
 * logits [b, V] (the caller owns and disposes this tensor; state.logits holds its own handle).
 */
export function decodeStep(
  model: CausalLMCore,
  state: GenerationState,
  nextIds: number[] | number[][] | tf.Tensor,
): {logits: tf.Tensor; state: GenerationState} {
  if (state.isDisposed) throw new Error('decodeStep: the state has been disposed');
  if (state.model !== model) throw new Error('decodeStep: the state belongs to another model');
  const b = state.batchSize;
  let ids: number[];
  if (nextIds instanceof tf.Tensor) {
    if (nextIds.size !== b || (nextIds.rank !== 1 && !(nextIds.rank === 2 && nextIds.shape[1] === 1))) {
      throw new Error(`decodeStep: nextIds must be [${b}] or [${b}, 1], got [${nextIds.shape}]`);
    }
    ids = Array.from(nextIds.dataSync());
  } else {
    ids = (nextIds as (number | number[])[]).map((x) => (Array.isArray(x) ? (x.length === 1 ? x[0] : NaN) : x));
    if (ids.length !== b) throw new Error(`decodeStep: ${ids.length} ids for a state of ${b} rows`);
  }
  if (!ids.every((x) => Number.isInteger(x))) throw new Error('decodeStep: nextIds must be one integer per row');
  checkIdRange(ids, model.config.vocab_size);
  const fused = fusedDecoderFor(model, b);
  if (fused != null) {
    const logits = state.fusedStep(fused, ids);
    state.replaceLogits(logits);
    state.positions = state.positions.map((p) => p + 1);
    return {logits: tf.clone(logits), state};
  }
  const out = runChunk(
    model,
    ids.map((x) => [x]),
    state.positions.map((p) => [p]),
    null,
    state.layers,
  );
  tf.dispose(state.tensors());
  state.layers = out.layers;
  state.logits = out.logits;
  state.positions = state.positions.map((p) => p + 1);
  return {logits: tf.clone(out.logits), state};
}
