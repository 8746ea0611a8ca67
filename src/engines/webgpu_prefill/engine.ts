/// <reference types="@webgpu/types" />
/**
 * The fused WebGPU prefill engine: a chunk of b rows x t prompt steps of the whole model as a
 * few custom WGSL dispatches per layer (plan.ts), encoded into one command encoder and submitted
 * once, writing the decoding state straight into the decode engine's buffers (FusedDecoder), so
 * decoding goes on from there with no copies. Pipelines are cached per device and source, bind
 * groups made once per (model, b, chunk capacity), both on first use (a matmul has a variant with
 * smaller tiles for short chunks) or ahead (prepare: compiled in parallel, without blocking); the
 * chunk's length is a word of the dims buffer, and each chunk size's dispatch list is kept ready.
 *   import {fusedDecoderFor} from '../webgpu_decode';
 *   const pre = new FusedPrefill(fusedDecoderFor(model, 1)!, 512);   // chunks of up to 512 steps
 *   void pre.prepare(3).then(() => console.log('a chunk of 3 rows compiles nothing now'));
 *   const logits = pre.run([[2, 651, 6037]], [[0, 1, 2]], true);     // [b, V] after the last step (the caller owns it)
 *   pre.run([[9]], [[3]], true, {logitsInEngine: true, after: (enc) => enc.clearBuffer(pre.decoder.logitsBuffer, 0, 4)});   // head into the engine's buffer, more work in the same submit
 *   const all = pre.device.createBuffer({size: 3 * model.config.vocab_size * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST});
 *   pre.runAll([[2, 651, 6037]], [[0, 1, 2]], {out: all, total: 3, start: 0});   // every step's logits into [b, total, V]
 *
 * The state a chunk starts from is whatever the decode engine holds (import a GenerationState's
 * layers first, or clearState for a fresh one); after it, the engine's ring pointers have moved on
 * by t (FusedDecoder.adoptPrefill). Positions must count up by one per step in each row (no
 * padding; a 0 starts a document).
 *
 * Shape letters: b batch rows, t steps per row in a chunk, M = b t token rows, V vocab_size,
 * d hidden_size, rot rotary dims.
 */
import type * as tf from '@tensorflow/tfjs';
import {tracePhase} from '../../util/host_trace';
import type {Dispatch, DispatchTiming, FusedDecoder} from '../webgpu_decode';
import {wgslBindings} from '../webgpu_decode/shaders';
import {flushTf, gpuBufferOf, type WebGPUBackendLike, webgpuBackend} from '../webgpu_decode/tfjs_webgpu';
import {fusedForwardConfig, prefillEarlySubmit} from './config';
import type {GridFn, PrefillDispatch} from './context';
import {buildFullHead, type FullHead, fullHeadRows, HEAD_DIMS_STRIDE} from './head_plan';
import {buildPrefillPlan, type PrefillPlan} from './plan';
import {DIMS, DIMS_WORDS} from './shaders/dims';
import {matmulMaxSplit, matmulSubgroupSize} from './shaders/matmul';

interface Made {
  pipeline: GPUComputePipeline;
  bind: GPUBindGroup;
  grid: GridFn;
}

interface Encoded {
  name: string;
  bytes: number;
  planned: PrefillDispatch;
  /** Pipelines and bind groups of the planned source ('') and its variants (one or two dispatches), by key (made on first use). */
  made: Map<string, Made[]>;
}

/** Where runAll writes: logits [b, total, V] in `out`, this chunk's steps from step `start` of each row. */
export interface AllLogits {
  out: GPUBuffer;
  total: number;
  start: number;
}

/** How run() encodes a chunk besides its dispatches (all in the chunk's one submit). */
export interface ChunkOptions {
  /** Zero the decode engine's state first (a fresh prompt), instead of a submit of its own. */
  clear?: boolean;
  /**
   * With logits: leave them in the decode engine's logits buffer (FusedDecoder.logitsBuffer) and
   * make no tensor (run returns null): a 4-byte pick reads them there, nothing copies [b, V].
   */
  logitsInEngine?: boolean;
  /** Encodes more work after the chunk and its head, before the one submit (a pick from the logits). */
  after?: (enc: GPUCommandEncoder) => void;
}

/** A binding's byte range (the rest are bound whole). */
type Ranges = Partial<Record<string, {offset: number; size: number}>>;

const pipelineCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
/** Pipelines being compiled asynchronously (prepare), per device and source. */
const pending = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline | null>>>();

/** A ready dispatch list's key: the chunk's token rows and the split-K bound its variants were picked under. */
function readyKey(M: number): string {
  return `${M}/${matmulMaxSplit()}`;
}

/** Chunk sizes (token rows M) whose ready dispatch lists an engine keeps (least recently used dropped). */
const READY_SIZES = 16;

/** Positions whose RoPE cos / sin the engine keeps computed (a longer prompt computes the rest per chunk). */
const ROPE_CACHE_POSITIONS = 32768;

export class FusedPrefill {
  readonly B: number;
  readonly device: GPUDevice;
  private readonly backend: WebGPUBackendLike;
  private readonly dispatches: Encoded[] = [];
  private readonly owned: GPUBuffer[] = [];
  private readonly plan: PrefillPlan;
  private readonly half: number;
  private readonly invFreq: Float32Array;
  /** cos then sin of each position in [0, ropeCached), half values each. */
  private ropeTable = new Float32Array(0);
  private ropeCached = 0;
  /** The all-rows head (runAll), planned on first use; its pipelines and bind groups per dispatch. */
  private full: {head: FullHead; made: Map<string, Made[]>[]} | null = null;
  /** Per chunk size M: the dispatches ready to encode (variant, pipeline, bind group and grid resolved). */
  private readonly ready = new Map<string, Dispatch[]>();
  private disposed = false;
  /** Set when the device reported an error about this engine's pipelines or bindings. */
  failed: string | null = null;

  constructor(
    readonly decoder: FusedDecoder,
    /** Most steps per row in a chunk. */
    readonly capacity: number,
  ) {
    this.B = decoder.B;
    this.backend = webgpuBackend();
    this.device = decoder.device;
    const c = decoder.model.config;
    const rot = c.rotary_dim;
    this.half = rot / 2;
    this.invFreq = Float32Array.from({length: this.half}, (_, j) => 1 / c.rope_theta ** ((2 * j) / rot));
    this.device.pushErrorScope('validation');
    let built = false;
    try {
      const encoder = this.device.createCommandEncoder();
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      this.plan = buildPrefillPlan(decoder.model, this.B, capacity, decoder.prefillTarget(), {
        limits: this.device.limits,
        encoder,
        subgroupSize: matmulSubgroupSize(this.device),
        own: (floats) => {
          const b = this.device.createBuffer({size: Math.max(16, Math.ceil((floats * 4) / 16) * 16), usage});
          this.owned.push(b);
          return b;
        },
        weight: (get) => gpuBufferOf(this.backend, get()),
      });
      for (const d of this.plan.dispatches) this.add(d);
      flushTf(this.backend);
      this.device.queue.submit([encoder.finish()]);
      built = true;
    } finally {
      const errors = this.device.popErrorScope();
      if (built) {
        void errors.then((err) => {
          if (err == null) return;
          this.failed = err.message;
          console.error(`fused WebGPU prefill disabled: ${err.message}`);
        });
      } else {
        void errors.catch(() => undefined);
        this.dispose();
      }
    }
    decoder.onDispose(() => this.dispose());
  }

  /** GPU dispatches per chunk (without the head). */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** Names of the dispatches, in order (diagnostics). */
  get dispatchNames(): string[] {
    return this.dispatches.map((d) => d.name);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * One chunk: ids and positions [b, t] (t <= capacity). Advances the decode engine's state;
   * with `logits`, returns the logits [b, V] after each row's last step (a new tensor), else null.
   */
  run(ids: number[][], positions: number[][], logits: boolean, opts: ChunkOptions = {}): tf.Tensor | null {
    return this.encode(ids, positions, logits, null, null, opts);
  }

  /**
   * Compiles, in parallel and without blocking (createComputePipelineAsync), the pipelines a chunk
   * of M token rows needs that are not made yet, then makes its bind groups: the next run() of
   * that size pays no compile. A pipeline the device rejects is left to run(), which reports it.
   */
  async prepare(M: number): Promise<void> {
    this.check();
    if (!(Number.isInteger(M) && M >= this.B && M <= this.B * this.capacity && M % this.B === 0))
      throw new Error(`fused prefill: prepare(${M}): token rows must be b x (1..${this.capacity})`);
    if (this.ready.has(readyKey(M))) return;
    const codes = new Map<string, string>();
    for (const x of this.dispatches) {
      const v = x.planned.variant?.(M) ?? null;
      if (x.made.has(v?.key ?? '')) continue;
      for (const p of v == null ? [x.planned] : [v, ...(v.after ? [v.after] : [])]) codes.set(p.code, x.name);
    }
    await Promise.all([...codes].map(([code, name]) => this.compile(code, name)));
    if (!this.disposed && this.failed == null) this.dispatchList(M, M / this.B);
  }

  /**
   * One chunk (advancing the state like run()) with every step's logits: final norm + head + soft
   * cap over all b t rows (head_plan.ts), in slices of fusedForwardConfig.headBytes of logits,
   * each slice's rows copied to row (r total + start + j) of `into.out` [b, total, V].
   */
  runAll(ids: number[][], positions: number[][], into: AllLogits): void {
    const V = this.decoder.model.config.vocab_size;
    const t = ids[0]?.length ?? 0;
    if (!(Number.isInteger(into.start) && into.start >= 0 && into.start + t <= into.total)) {
      throw new Error(`fused prefill: steps ${into.start}..${into.start + t} outside the output's ${into.total}`);
    }
    if (into.out.size < this.B * into.total * V * 4) throw new Error('fused prefill: the logits buffer is too small');
    this.encode(ids, positions, false, null, into);
  }

  /**
   * A chunk (it advances the state like run()) with every dispatch in a compute pass of its own
   * and GPU timestamps around it: per-dispatch times (the head's named 'head'), or null without
   * 'timestamp-query'. The pass boundaries add their own cost, so the sum exceeds a plain chunk's.
   */
  async profileChunk(
    ids: number[][],
    positions: number[][],
  ): Promise<{logits: tf.Tensor; timings: DispatchTiming[] | null}> {
    if (!this.device.features.has('timestamp-query')) {
      return {logits: this.run(ids, positions, true)!, timings: null};
    }
    const list = this.dispatchList(this.B * ids[0].length, ids[0].length);
    const names = [...list.map((d) => d.name), ...this.decoder.headDispatches.map(() => 'head')];
    const bytes = [...list.map((d) => d.bytes), ...this.decoder.headDispatches.map((d) => d.bytes)];
    const n = names.length;
    const querySet = this.device.createQuerySet({type: 'timestamp', count: 2 * n});
    const resolve = this.device.createBuffer({
      size: 16 * n,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.device.createBuffer({size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const logits = this.encode(ids, positions, true, {querySet, resolve, read, n}, null)!;
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    [read, resolve].forEach((b) => b.destroy());
    querySet.destroy();
    const timings = names.map((name, i) => ({name, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6, bytes: bytes[i]}));
    return {logits, timings};
  }

  private encode(
    ids: number[][],
    positions: number[][],
    wantLogits: boolean,
    prof: {querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer; n: number} | null,
    all: AllLogits | null,
    opts: ChunkOptions = {},
  ): tf.Tensor | null {
    this.check();
    const B = this.B,
      V = this.decoder.model.config.vocab_size,
      d = this.decoder.model.config.hidden_size;
    if (ids.length !== B || positions.length !== B) throw new Error(`fused prefill: ${ids.length} rows for ${B}`);
    const t = ids[0].length;
    if (t < 1 || t > this.capacity) throw new Error(`fused prefill: a chunk of ${t} steps (1..${this.capacity})`);
    const M = B * t;
    const idw = new Uint32Array(M),
      posw = new Uint32Array(M);
    for (let r = 0; r < B; r++) {
      if (ids[r].length !== t || positions[r].length !== t) throw new Error('fused prefill: ragged chunk');
      for (let j = 0; j < t; j++) {
        const id = ids[r][j];
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
        }
        const p = positions[r][j];
        if (j > 0 && p !== 0 && p !== positions[r][j - 1] + 1) {
          throw new Error(`fused prefill: row ${r}: positions must count up by one (or restart at 0)`);
        }
        idw[r * t + j] = id;
        posw[r * t + j] = p;
      }
    }
    tracePhase('prefill.check');
    const target = this.decoder.prefillTarget();
    const dims = new Uint32Array(DIMS_WORDS);
    dims[DIMS.M] = M;
    dims[DIMS.T] = t;
    dims[DIMS.HEAD] = target.head;
    dims[DIMS.CONV] = target.convNext;
    const q = this.device.queue;
    q.writeBuffer(this.plan.dims, 0, dims);
    q.writeBuffer(this.plan.ids, 0, idw);
    q.writeBuffer(this.plan.pos, 0, posw);
    if (this.half > 0 && this.decoder.model.config.layers_block_type.includes('attention')) {
      q.writeBuffer(this.plan.rope, 0, this.ropeRows(posw));
    }
    flushTf(this.backend);
    tracePhase('prefill.write');
    let enc = this.device.createCommandEncoder();
    if (opts.clear) this.decoder.clearState(enc);
    const list = this.dispatchList(M, t);
    const head = wantLogits ? this.decoder.headDispatches : [];
    const passOf = (i: number) =>
      enc.beginComputePass(
        prof
          ? {
              timestampWrites: {
                querySet: prof.querySet,
                beginningOfPassWriteIndex: 2 * i,
                endOfPassWriteIndex: 2 * i + 1,
              },
            }
          : undefined,
      );
    const encodeAll = (ds: readonly Dispatch[], first: number) => {
      let pass = prof ? null : passOf(0);
      ds.forEach((x, k) => {
        if (prof) pass = passOf(first + k);
        pass!.setPipeline(x.pipeline);
        pass!.setBindGroup(0, x.bind);
        pass!.dispatchWorkgroups(x.grid[0], x.grid[1], x.grid[2]);
        if (prof) pass!.end();
      });
      if (!prof) pass!.end();
    };
    tracePhase('prefill.plan');
    // The first dispatches go in a submit of their own: the GPU starts on them while the host encodes the rest.
    const early = prof ? 0 : prefillEarlySubmit();
    if (early > 0 && list.length > 2 * early) {
      encodeAll(list.slice(0, early), 0);
      q.submit([enc.finish()]);
      enc = this.device.createCommandEncoder();
      encodeAll(list.slice(early), early);
    } else {
      encodeAll(list, 0);
    }
    if (all != null) this.encodeAllRows(enc, M, t, all);
    let out: tf.Tensor | null = null;
    if (wantLogits) {
      // Each row's last step into the decode engine's x, then its final norm + head.
      for (let r = 0; r < B; r++) {
        enc.copyBufferToBuffer(this.plan.x, (r * t + t - 1) * d * 4, target.x, r * d * 4, d * 4);
      }
      encodeAll(head, list.length);
      if (!opts.logitsInEngine) out = this.decoder.newLogits(enc);
    }
    opts.after?.(enc);
    if (prof) {
      enc.resolveQuerySet(prof.querySet, 0, 2 * prof.n, prof.resolve, 0);
      enc.copyBufferToBuffer(prof.resolve, 0, prof.read, 0, 16 * prof.n);
    }
    tracePhase('prefill.encode');
    q.submit([enc.finish()]);
    this.decoder.adoptPrefill(t);
    tracePhase('prefill.submit');
    return out;
  }

  /**
   * The all-rows head after a chunk of M rows (t per batch row): per slice of S rows its
   * dispatches (x and dims bound at the slice), then the slice's rows copied into `all.out`.
   */
  private encodeAllRows(enc: GPUCommandEncoder, M: number, t: number, all: AllLogits): void {
    const c = this.decoder.model.config;
    const V = c.vocab_size,
      d = c.hidden_size;
    if (this.full == null) {
      const hb = fusedForwardConfig.headBytes;
      if (!(Number.isFinite(hb) && hb >= 2 ** 20 && hb <= 2 ** 31)) {
        throw new Error(`fusedForwardConfig.headBytes must be in [1 MiB, 2 GiB], got ${hb}`);
      }
      const lim = this.device.limits;
      const most = Math.min(hb, lim.maxStorageBufferBindingSize, lim.maxBufferSize);
      const S = fullHeadRows(V, most, this.B * this.capacity);
      this.device.pushErrorScope('validation');
      let head: FullHead;
      try {
        head = buildFullHead(this.plan.ctx, S);
      } finally {
        this.watch(this.device.popErrorScope());
      }
      this.full = {head, made: head.dispatches.map(() => new Map())};
    }
    const {head, made} = this.full;
    const S = head.rows,
      slices = Math.ceil(M / S);
    const words = new Uint32Array((slices * HEAD_DIMS_STRIDE) / 4);
    for (let k = 0; k < slices; k++) words[(k * HEAD_DIMS_STRIDE) / 4] = Math.min(S, M - k * S);
    this.device.queue.writeBuffer(head.dims, 0, words);
    const xBytes = this.plan.x.size;
    for (let k = 0; k < slices; k++) {
      const a = k * S,
        n = Math.min(S, M - a);
      const ranges: Ranges = {
        x: {offset: a * d * 4, size: Math.min(S * d * 4, xBytes - a * d * 4)},
        dims: {offset: k * HEAD_DIMS_STRIDE, size: 16},
      };
      const pass = enc.beginComputePass();
      head.dispatches.forEach((x, i) => {
        const v = x.variant?.(n) ?? {key: '', code: x.code, grid: x.grid};
        const key = `${v.key}|${k}`;
        let ms = made[i].get(key);
        if (ms == null) {
          this.device.pushErrorScope('validation');
          try {
            // One dispatch, or two for a split-K variant (its own bindings: the partial sums).
            ms = [v, ...(v.after ? [v.after] : [])].map((p) => ({
              ...this.pipelineAndBind(p.code, x, p.bindings, ranges),
              grid: p.grid,
            }));
          } finally {
            this.watch(this.device.popErrorScope());
          }
          made[i].set(key, ms);
        }
        for (const m of ms) {
          const g = m.grid(n, t);
          pass.setPipeline(m.pipeline);
          pass.setBindGroup(0, m.bind);
          pass.dispatchWorkgroups(g[0], g[1], g[2]);
        }
      });
      pass.end();
      // The slice's rows, batch row by batch row, to their places in [b, total, V].
      for (let r = Math.floor(a / t); r * t < a + n; r++) {
        const j0 = Math.max(a - r * t, 0),
          j1 = Math.min(a + n - r * t, t);
        const dst = (r * all.total + all.start + j0) * V * 4;
        enc.copyBufferToBuffer(head.out, (r * t + j0 - a) * V * 4, all.out, dst, (j1 - j0) * V * 4);
      }
    }
  }

  /** Marks the engine failed if the device reported an error in this scope. */
  private watch(scope: Promise<GPUError | null>): void {
    void scope.then((err) => {
      if (err == null) return;
      this.failed = err.message;
      console.error(`fused WebGPU prefill disabled: ${err.message}`);
    });
  }

  /** RoPE's table for the chunk's positions: per token row half cos then half sin. */
  private ropeRows(pos: Uint32Array): Float32Array<ArrayBuffer> {
    const h = this.half;
    const out = new Float32Array(pos.length * 2 * h);
    let most = 0;
    for (const p of pos) most = Math.max(most, p);
    if (most >= this.ropeCached && this.ropeCached < ROPE_CACHE_POSITIONS) {
      const n = Math.min(ROPE_CACHE_POSITIONS, Math.max(most + 1, 2 * this.ropeCached, 1024));
      const table = new Float32Array(n * 2 * h);
      table.set(this.ropeTable);
      for (let p = this.ropeCached; p < n; p++) this.angles(p, table, p * 2 * h);
      this.ropeTable = table;
      this.ropeCached = n;
    }
    pos.forEach((p, i) => {
      if (p < this.ropeCached) out.set(this.ropeTable.subarray(p * 2 * h, (p + 1) * 2 * h), i * 2 * h);
      else this.angles(p, out, i * 2 * h);
    });
    return out;
  }

  /** cos and sin of one position's angles as the tfjs path computes them: float32 position * float32 frequency. */
  private angles(p: number, into: Float32Array, at: number): void {
    const h = this.half;
    for (let j = 0; j < h; j++) {
      const angle = Math.fround(Math.fround(p) * this.invFreq[j]);
      into[at + j] = Math.cos(angle);
      into[at + h + j] = Math.sin(angle);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.owned) b.destroy();
  }

  private check(): void {
    if (this.disposed) throw new Error('fused prefill: the engine has been disposed');
  }

  /**
   * The dispatches of a chunk of M rows (t per batch row), ready to encode: resolved once per M
   * (a variant's source is generated, its pipelines and bind groups made, split-K's sums after
   * their matmul, the grids computed) and kept for the READY_SIZES sizes used last, so that a
   * chunk of a size seen before only encodes.
   */
  private dispatchList(M: number, t: number): Dispatch[] {
    const key = readyKey(M);
    let list = this.ready.get(key);
    if (list != null) {
      this.ready.delete(key); // most recently used last
      this.ready.set(key, list);
      return list;
    }
    list = this.dispatches.flatMap((x) =>
      this.variantOf(x, M).map((v) => ({
        pipeline: v.pipeline,
        bind: v.bind,
        grid: v.grid(M, t),
        name: x.name,
        bytes: x.bytes,
      })),
    );
    this.ready.set(key, list);
    if (this.ready.size > READY_SIZES) this.ready.delete(this.ready.keys().next().value as string);
    return list;
  }

  /** Compiles `code` asynchronously into the pipeline cache (once per device and source, shared by callers). */
  private compile(code: string, label: string): Promise<GPUComputePipeline | null> {
    let cache = pipelineCache.get(this.device);
    if (cache == null) pipelineCache.set(this.device, (cache = new Map()));
    const made = cache.get(code);
    if (made != null) return Promise.resolve(made);
    let inFlight = pending.get(this.device);
    if (inFlight == null) pending.set(this.device, (inFlight = new Map()));
    let p = inFlight.get(code);
    if (p == null) {
      const c = cache;
      // Errors are left to the synchronous path (run), which makes the pipeline inside an error scope.
      this.device.pushErrorScope('validation');
      const module = this.device.createShaderModule({code, label});
      void this.device.popErrorScope().catch(() => undefined);
      p = this.device
        .createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint: 'main'}, label})
        .then(
          (pipeline) => {
            if (!c.has(code)) c.set(code, pipeline);
            return c.get(code)!;
          },
          () => null, // rejected: the synchronous path (run) makes it inside an error scope and reports why
        )
        .finally(() => inFlight.delete(code));
      inFlight.set(code, p);
    }
    return p;
  }

  /**
   * The pipelines and bind groups for a chunk of M rows: the planned source, or its variant for M
   * (one dispatch, or two: split-K's); made on first use (a short prompt never compiles the large
   * tiles, nor a long one the small).
   */
  private variantOf(x: Encoded, M: number): Made[] {
    const v = x.planned.variant?.(M) ?? {key: '', code: x.planned.code, grid: x.planned.grid};
    let made = x.made.get(v.key);
    if (made == null) {
      this.device.pushErrorScope('validation');
      made = [v, ...(v.after ? [v.after] : [])].map((p) => ({
        ...this.pipelineAndBind(p.code, x.planned, p.bindings),
        grid: p.grid,
      }));
      void this.device.popErrorScope().then((err) => {
        if (err == null) return;
        this.failed = err.message;
        console.error(`fused WebGPU prefill disabled: ${err.message}`);
      });
      x.made.set(v.key, made);
    }
    return made;
  }

  /** The pipeline (cached per device and source) of `code` and a bind group of d's buffers (or `own`) for it. */
  private pipelineAndBind(
    code: string,
    d: PrefillDispatch,
    own?: PrefillDispatch['bindings'],
    ranges: Ranges = {},
  ): {pipeline: GPUComputePipeline; bind: GPUBindGroup} {
    const bindings = own ?? d.bindings;
    let cache = pipelineCache.get(this.device);
    if (cache == null) pipelineCache.set(this.device, (cache = new Map()));
    let pipeline = cache.get(code);
    if (pipeline == null) {
      const module = this.device.createShaderModule({code, label: d.name});
      pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: {module, entryPoint: 'main'},
        label: d.name,
      });
      cache.set(code, pipeline);
    }
    const names = wgslBindings(code);
    const extra = Object.keys(bindings).filter((k) => !names.includes(k));
    if (extra.length > 0) throw new Error(`fused prefill: ${d.name}: no binding named ${extra.join(', ')}`);
    const entries = names.map((name, i) => {
      const buffer = bindings[name];
      if (buffer == null) throw new Error(`fused prefill: ${d.name}: binding ${i} (${name}) missing`);
      return {binding: i, resource: {buffer, ...ranges[name]}};
    });
    const bind = this.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries, label: d.name});
    return {pipeline, bind};
  }

  /** A planned dispatch (its bindings checked against its source now, its pipeline made on first use). */
  private add(d: PrefillDispatch): void {
    const names = wgslBindings(d.code);
    const extra = Object.keys(d.bindings).filter((k) => !names.includes(k));
    if (extra.length > 0) throw new Error(`fused prefill: ${d.name}: no binding named ${extra.join(', ')}`);
    const missing = names.filter((k) => d.bindings[k] == null);
    if (missing.length > 0) throw new Error(`fused prefill: ${d.name}: binding ${missing.join(', ')} missing`);
    this.dispatches.push({name: d.name, bytes: d.bytes, planned: d, made: new Map()});
  }
}

export type {DispatchTiming};
