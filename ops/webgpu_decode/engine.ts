/// <reference types="@webgpu/types" />
/**
 * The fused WebGPU decode engine: one token step of the whole model as ~5 custom WGSL dispatches
 * per layer, encoded into one command encoder and submitted once, with pipelines and bind groups
 * made once per (model, batch size) and reused every step.
 *   const eng = new FusedDecoder(model, b);
 *   eng.importLayers(state.layers);              // GenerationState layout -> engine buffers
 *   const logits = eng.step(ids, positions);     // [b, V] tf tensor (the caller owns it)
 *   const layers = eng.exportLayers();           // engine buffers -> new GenerationState tensors
 *
 * It binds the model's weight tensors' own GPU buffers (tfjs-backend-webgpu's tensorMap resource;
 * nothing copied but the few small vectors packed per layer), and owns the decoding state: per
 * recurrent layer the conv history [b, w-1, e] and h [b, e] (the GenerationState layout, updated
 * in place), per attention layer a ring of W+1 slots of k, v [b, W+1, K, hd] and their validity
 * [b, W+1]: slot `head` receives the new token's key and value, every slot is attended, and the
 * W slots other than the next `head` are the state's window (oldest first from head + 1).
 *
 * Per layer (recurrent): [norm + linear_x | linear_y (+gelu)] -> [conv1d + RG-LRU + * gelu(y)]
 * -> [linear_out + residual] -> [norm + gate/up + GeGLU] -> [down + residual];
 * (attention): [norm + q|k|v] -> [RoPE, ring store] -> [partial attention] -> [combine] ->
 * [o_proj + residual] -> MLP as above. Plus the embedding (per vocabulary piece) and the final
 * norm + head + soft cap (per piece).
 */
import * as tf from '@tensorflow/tfjs';
import type {RecurrentGemmaForCausalLM} from '../../src/model';
import type {LayerState} from '../../layers/model_layers';
import {
  AttnSpec, attnChunks, attnCombineSource, attnPartialSource, attnThreads, embedSource, GemvSpec,
  gemvBindings, gemvRows, gemvSource, rgLruGrid, rgLruSharedBytes, rgLruSource, RgLruSpec, ropeSource, stepLayout, StepLayout,
} from './shaders';

interface TensorData { resource?: unknown; values?: unknown }
/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.22) this engine uses. */
export interface WebGPUBackendLike {
  device: GPUDevice;
  tensorMap: {get(id: object): TensorData | undefined; has(id: object): boolean};
  uploadToGPU(id: object): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): {dataId: object, shape: number[], dtype: 'float32'};
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

interface Dispatch { pipeline: GPUComputePipeline; bind: GPUBindGroup; grid: [number, number, number]; name: string; bytes: number }

/** One dispatch's GPU time in a profiled step, and the bytes of weights / cache it must read. */
export interface DispatchTiming { name: string; ms: number; bytes: number }

interface RecurrentBuffers { kind: 'recurrent'; st: GPUBuffer }
interface AttentionBuffers { kind: 'attention'; k: GPUBuffer; v: GPUBuffer; valid: GPUBuffer }

/**
 * Tuning knobs, 0 = default (also from env GRIFFIN_FUSED_THREADS / _ROWS / _UNROLL / _CHUNK /
 * _LRU_SLICES): GEMV threads, most rows per workgroup and strides per loop trip (loads in
 * flight), attention ring slots per workgroup, RG-LRU input slices.
 */
export const fusedTuning = {threads: 0, maxRows: 0, unroll: 0, chunk: 0, lruSlices: 0};

/**
 * GEMV strides per loop trip. H200, 2B shape: at batch 8, 4 gave 915 tok/s in the bare loop
 * against 838 with 1 (generation: 828 against 677); at batch 1, 2 and 4 tie (232 tok/s).
 * Above 8 rows the accumulators would crowd the registers: 1.
 */
function defaultUnroll(B: number): number {
  return B <= 4 ? 2 : B <= 8 ? 4 : 1;
}

/**
 * The RG-LRU kernel's shape: 32 channels per workgroup (64 for wide heads) and as many input
 * slices (8, 4, 2, 1) as fit in 256 invocations and in workgroup memory.
 */
function rgLruPlan(B: number, E: number, H: number, W: number, step: StepLayout, sharedLimit: number): RgLruSpec {
  const bw = E / H;
  const CC = Math.min(64, Math.max(32, Math.ceil(bw / 32) * 32));
  const want = fusedTuning.lruSlices || envInt('GRIFFIN_FUSED_LRU_SLICES') || 8;
  for (let JS = want; JS >= 1; JS = Math.floor(JS / 2)) {
    const spec = {B, E, H, W, CC, JS, step};
    if (CC * JS <= 256 && rgLruSharedBytes(spec) <= sharedLimit) return spec;
  }
  return {B, E, H, W, CC, JS: 1, step};
}

function envInt(name: string): number {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  return v ? Number(v) : 0;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export class FusedDecoder {
  readonly B: number;
  private readonly backend: WebGPUBackendLike;
  private readonly device: GPUDevice;
  private readonly dispatches: Dispatch[] = [];
  private readonly owned: GPUBuffer[] = [];
  /** Every weight tensor bound, with the buffer it had: a change (reassigned variable, disposed model) makes the engine stale. */
  private readonly bound: {t: () => tf.Tensor, dataId: object, buffer: unknown}[] = [];
  private readonly layerBufs: (RecurrentBuffers | AttentionBuffers)[] = [];
  private readonly stepBuf: GPUBuffer;
  private readonly logitsBuf: GPUBuffer;
  /** The next step's dispatches, encoded ahead (run()). */
  private nextDispatches: GPUCommandBuffer | null = null;
  private readonly step_: StepLayout;
  private readonly invFreq: Float32Array;
  private readonly S: number;          // ring slots (W + 1)
  private head: number;                // the ring slot the next token's key goes to
  private convNext: number;            // the conv ring slot the next token's input goes to
  private disposed = false;
  /** Set when the device reported an error about this engine's pipelines or bindings. */
  failed: string | null = null;
  /** The GenerationState whose layers live in this engine now (see state.ts). */
  owner: {detachFused(): void} | null = null;

  constructor(readonly model: RecurrentGemmaForCausalLM, B: number) {
    this.B = B;
    this.backend = tf.backend() as unknown as WebGPUBackendLike;
    this.device = this.backend.device;
    // Shader or binding errors surface asynchronously: caught here, they disable the engine.
    this.device.pushErrorScope('validation');
    let built = false;
    try {
      const c = model.config;
      const d = c.hidden_size, e = c.lru_width, m = c.intermediate_size / 2, V = c.vocab_size;
      const H = c.num_attention_heads, K = c.num_key_value_heads, hd = c.head_dim, W = c.attention_window_size;
      const w = c.conv1d_width, rot = c.rotary_dim;
      this.S = W + 1;
      this.head = W;
      this.convNext = w - 1;
      this.step_ = stepLayout(B, rot / 2);
      this.invFreq = Float32Array.from({length: rot / 2}, (_, j) => 1 / Math.pow(c.rope_theta, (2 * j) / rot));
      const limit = this.device.limits;
      // GEMV workgroups: T threads stride over the input, each holding R rows x B accumulators.
      // Defaults from the H200 sweeps (bench/results/NOTES.md): 128 threads x 4 rows was the best
      // of 64x4, 128x4, 128x2 and 256x2 at batch 1, 64 x 4 at batch 8.
      const T = fusedTuning.threads || envInt('GRIFFIN_FUSED_THREADS') || (B <= 4 ? 128 : 64);
      const maxR = fusedTuning.maxRows || envInt('GRIFFIN_FUSED_ROWS') || 4;
      // Ring slots per attention workgroup: short chunks spread a short context over more of the GPU.
      const CS = fusedTuning.chunk || envInt('GRIFFIN_FUSED_CHUNK') || 16;
      // Checked before anything is allocated.
      if (B * (e / H) * 4 > limit.maxComputeWorkgroupStorageSize) throw new Error(`fused decode: ${B} rows x ${e / H} channels per head exceed workgroup memory`);
      if (H / K * CS * 4 > limit.maxComputeWorkgroupStorageSize / 2) throw new Error('fused decode: too many query heads per key head');

      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      const own = (floats: number) => {
        const b = this.device.createBuffer({size: Math.max(16, Math.ceil(floats * 4 / 16) * 16), usage});
        this.owned.push(b);
        return b;
      };
      const x = own(B * d), uy = own(B * 2 * e), o = own(B * e), hid = own(B * m);
      const hasAttn = c.layers_block_type.includes('attention');
      const qkv = own(B * (H + 2 * K) * hd), qr = own(B * H * hd), attn = own(B * H * hd);
      const aspec: AttnSpec = {B, H, K, HD: hd, ROT: rot, S: this.S, step: this.step_, CS, T: attnThreads(H / K, CS, hd)};
      const part = hasAttn ? own(B * H * attnChunks(aspec) * (hd + 2)) : own(4);
      this.stepBuf = own(this.step_.words);
      this.logitsBuf = own(B * V);

      // Pre-encoded copies that pack small per-layer vectors (biases, conv taps).
      const enc = this.device.createCommandEncoder();
      const pack = (parts: (tf.Tensor | number)[]) => {
        const total = parts.reduce<number>((s, p) => s + (typeof p === 'number' ? p : p.size), 0);
        const buf = own(total);
        let off = 0;
        for (const p of parts) {
          if (typeof p === 'number') {
            enc.clearBuffer(buf, off * 4, p * 4);
            off += p;
          } else {
            enc.copyBufferToBuffer(this.buf(() => p), 0, buf, off * 4, p.size * 4);
            off += p.size;
          }
        }
        return buf;
      };

      const gemv = (name: string, spec: Omit<GemvSpec, 'R' | 'T'>, res: Record<string, GPUBuffer>) => {
        const P = spec.mode === 'geglu' ? 2 : 1;
        let R = maxR;
        const fits = (r: number) => r * P * spec.B <= 32 && spec.segments.every((n) => n % r === 0) &&
            (r * P * spec.B + (spec.norm ? spec.B : 0)) * T * 4 <= limit.maxComputeWorkgroupStorageSize;
        while (R > 1 && !fits(R)) R = R >> 1;
        if (!fits(R)) throw new Error(`fused decode: no GEMV tiling for ${name}`);
        const full: GemvSpec = {...spec, R, T, U: fusedTuning.unroll || envInt('GRIFFIN_FUSED_UNROLL') || defaultUnroll(spec.B)};
        const nwg = gemvRows(full) / R;
        const gx = Math.min(nwg, limit.maxComputeWorkgroupsPerDimension);
        const bytes = spec.segments.reduce((a, n) => a + n * spec.IN * 4, 0) * (spec.mode === 'geglu' ? 2 : 1);
        this.add(name, gemvSource(full), gemvBindings(full).map((k) => res[k]), [gx, Math.ceil(nwg / gx), 1], bytes);
      };
      const wt = (get: () => tf.Tensor) => this.buf(get);

      // Embedding, per piece.
      const emb = model.embed;
      for (const p of emb.matrix.pieces) {
        this.add('embed', embedSource({B, D: d, start: p.start, rows: p.rows, scale: emb.scale, step: this.step_}),
            [this.buf(() => p.variable.read()), this.stepBuf, x], [Math.ceil(B * d / 256), 1, 1], B * d * 4);
      }

      model.blocks.forEach((blk, li) => {
        const pre = () => blk.temporal_pre_norm.weight.read();
        const tb = blk.temporal_block as unknown as Record<string, {weight: {read(): tf.Tensor}, bias: {read(): tf.Tensor} | null}>;
        if (blk.blockType === 'recurrent') {
          const lx = tb.linear_x, ly = tb.linear_y, lo = tb.linear_out;
          const rg = (blk.temporal_block as unknown as {rg_lru: Record<string, {read(): tf.Tensor}>}).rg_lru;
          const cv = (blk.temporal_block as unknown as {conv_1d: {weight: {read(): tf.Tensor}, bias: {read(): tf.Tensor}}}).conv_1d;
          gemv(`L${li}.xy`, {B, IN: d, segments: [e, e], gelu: [false, true], mode: 'store', norm: true, eps: c.rms_norm_eps,
            bias: true, outStride: 2 * e}, {x, g: wt(pre), w0: wt(() => lx.weight.read()), w1: wt(() => ly.weight.read()),
            bias: pack([lx.bias!.read(), ly.bias!.read()]), out: uy});
          const st = own(B * w * e + B * e);
          this.layerBufs.push({kind: 'recurrent', st});
          const pk = pack([cv.weight.read(), cv.bias.read(), rg.input_gate_bias.read(), rg.recurrent_gate_bias.read(), rg.recurrent_param.read()]);
          const bw = e / H;
          const rspec = rgLruPlan(B, e, H, w, this.step_, limit.maxComputeWorkgroupStorageSize);
          this.add(`L${li}.rglru`, rgLruSource(rspec),
              [uy, pk, wt(() => rg.input_gate_weight.read()), wt(() => rg.recurrent_gate_weight.read()), st, o, this.stepBuf], rgLruGrid(rspec),
              2 * e * bw * 4);
          gemv(`L${li}.out`, {B, IN: e, segments: [d], mode: 'residual', norm: false, bias: true, outStride: d},
              {x: o, w0: wt(() => lo.weight.read()), bias: wt(() => lo.bias!.read()), out: x});
        } else {
          const q = tb.q_proj, k = tb.k_proj, v = tb.v_proj, op = tb.o_proj;
          const biased = q.bias != null;
          const kb = own(B * this.S * K * hd), vb = own(B * this.S * K * hd), valid = own(B * this.S);
          this.layerBufs.push({kind: 'attention', k: kb, v: vb, valid});
          gemv(`L${li}.qkv`, {B, IN: d, segments: [H * hd, K * hd, K * hd], mode: 'store', norm: true, eps: c.rms_norm_eps,
            bias: biased, outStride: (H + 2 * K) * hd}, {x, g: wt(pre), w0: wt(() => q.weight.read()), w1: wt(() => k.weight.read()),
            w2: wt(() => v.weight.read()), ...(biased ? {bias: pack([q.bias!.read(), k.bias!.read(), v.bias!.read()])} : {}), out: qkv});
          this.add(`L${li}.rope`, ropeSource(aspec), [qkv, this.stepBuf, qr, kb, vb, valid], [B, 1, 1]);
          this.add(`L${li}.attn`, attnPartialSource(aspec), [qr, kb, vb, valid, part], [attnChunks(aspec), K, B], 2 * B * this.S * K * hd * 4);
          this.add(`L${li}.combine`, attnCombineSource(aspec), [part, attn], [H, B, 1]);
          gemv(`L${li}.o`, {B, IN: H * hd, segments: [d], mode: 'residual', norm: false, bias: true, outStride: d},
              {x: attn, w0: wt(() => op.weight.read()), bias: wt(() => op.bias!.read()), out: x});
        }
        const mlp = blk.mlp_block;
        gemv(`L${li}.gateup`, {B, IN: d, segments: [m, m], mode: 'geglu', norm: true, eps: c.rms_norm_eps, bias: true, outStride: m},
            {x, g: wt(() => blk.channel_pre_norm.weight.read()), w0: wt(() => mlp.gate_proj.weight.read()),
              w1: wt(() => mlp.up_proj.weight.read()), bias: pack([mlp.gate_proj.bias!.read(), mlp.up_proj.bias!.read()]), out: hid});
        gemv(`L${li}.down`, {B, IN: m, segments: [d], mode: 'residual', norm: false, bias: true, outStride: d},
            {x: hid, w0: wt(() => mlp.down_proj.weight.read()), bias: wt(() => mlp.down_proj.bias!.read()), out: x});
      });

      const headMatrix = (model.lmHead ?? model.embed).matrix;
      for (const p of headMatrix.pieces) {
        gemv('head', {B, IN: d, segments: [p.rows], mode: 'softcap', norm: true, eps: c.rms_norm_eps, bias: false,
          outStride: V, outOffset: p.start, cap: c.logits_soft_cap},
        {x, g: wt(() => model.finalNorm.weight.read()), w0: this.buf(() => p.variable.read()), out: this.logitsBuf});
      }
      this.flushTf();
      this.device.queue.submit([enc.finish()]);
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
  get dispatchCount(): number { return this.dispatches.length; }

  /** Names of the dispatches, in order (diagnostics). */
  get dispatchNames(): string[] { return this.dispatches.map((d) => d.name); }

  /** Whether every bound weight still has the buffer it was bound with. */
  isCurrent(): boolean {
    if (this.disposed) return false;
    for (const b of this.bound) {
      let t: tf.Tensor;
      try { t = b.t(); } catch { return false; }
      if (t.isDisposed || t.dataId !== b.dataId) return false;
      if (this.backend.tensorMap.get(t.dataId)?.resource !== b.buffer) return false;
    }
    return true;
  }

  /** Copies a GenerationState's layers (tensors of b rows) into the engine; the tensors stay the caller's. */
  importLayers(layers: LayerState[]): void {
    this.check();
    const B = this.B, c = this.model.config, W = c.attention_window_size, e = c.lru_width, w = c.conv1d_width;
    const enc = this.device.createCommandEncoder();
    layers.forEach((s, i) => {
      const lb = this.layerBufs[i];
      const t = s as unknown as Record<string, tf.Tensor>;
      if (lb.kind === 'recurrent') {
        if (t.rnn.shape[0] !== B) throw new Error(`fused decode: state of ${t.rnn.shape[0]} rows, engine of ${B}`);
        // History entries (oldest first) into ring slots 0 .. w-2; the next input goes to slot w-1.
        const hist = (w - 1) * e;
        if (hist > 0) {
          const conv = this.tensorBuffer(t.conv);
          for (let b = 0; b < B; b++) enc.copyBufferToBuffer(conv, b * hist * 4, lb.st, b * w * e * 4, hist * 4);
        }
        enc.copyBufferToBuffer(this.tensorBuffer(t.rnn), 0, lb.st, B * w * e * 4, B * e * 4);
      } else {
        const row = t.k.size / B;  // W * K * hd
        const k = this.tensorBuffer(t.k), v = this.tensorBuffer(t.v), valid = this.tensorBuffer(t.valid);
        const ringRow = row / W * this.S;
        for (let b = 0; b < B; b++) {
          enc.copyBufferToBuffer(k, b * row * 4, lb.k, b * ringRow * 4, row * 4);
          enc.copyBufferToBuffer(v, b * row * 4, lb.v, b * ringRow * 4, row * 4);
          enc.copyBufferToBuffer(valid, b * W * 4, lb.valid, b * this.S * 4, W * 4);
        }
      }
    });
    this.head = W;
    this.convNext = w - 1;
    this.flushTf();
    this.device.queue.submit([enc.finish()]);
  }

  /** New tensors holding the engine's state in the GenerationState layout. */
  exportLayers(): LayerState[] {
    this.check();
    const B = this.B, c = this.model.config, W = c.attention_window_size, S = this.S;
    const K = c.num_key_value_heads, hd = c.head_dim, e = c.lru_width, w = c.conv1d_width;
    const enc = this.device.createCommandEncoder();
    const made: tf.Tensor[] = [];
    const fresh = (shape: number[]) => {
      const {tensor, buffer} = this.newTensor(shape);
      made.push(tensor);
      return {tensor, buffer};
    };
    // Ring slots oldest first: head + 1, ..., S - 1, 0, ..., head - 1.
    const runs: [number, number, number][] = [];   // [from slot, to index, count]
    const first = (this.head + 1) % S;
    const n1 = Math.min(W, S - first);
    runs.push([first, 0, n1]);
    if (n1 < W) runs.push([0, n1, W - n1]);
    const layers = this.layerBufs.map((lb) => {
      if (lb.kind === 'recurrent') {
        const conv = fresh([B, w - 1, e]), rnn = fresh([B, e]);
        // History entry k (oldest first) is ring slot convNext + 1 + k.
        for (let b = 0; b < B; b++) {
          for (let k = 0; k < w - 1; k++) {
            const slot = (this.convNext + 1 + k) % w;
            enc.copyBufferToBuffer(lb.st, (b * w + slot) * e * 4, conv.buffer, (b * (w - 1) + k) * e * 4, e * 4);
          }
        }
        enc.copyBufferToBuffer(lb.st, B * w * e * 4, rnn.buffer, 0, B * e * 4);
        return {conv: conv.tensor, rnn: rnn.tensor} as unknown as LayerState;
      }
      const k = fresh([B, W, K, hd]), v = fresh([B, W, K, hd]), valid = fresh([B, W]);
      const slot = K * hd;
      for (let b = 0; b < B; b++) {
        for (const [from, to, n] of runs) {
          if (n === 0) continue;
          enc.copyBufferToBuffer(lb.k, (b * S + from) * slot * 4, k.buffer, (b * W + to) * slot * 4, n * slot * 4);
          enc.copyBufferToBuffer(lb.v, (b * S + from) * slot * 4, v.buffer, (b * W + to) * slot * 4, n * slot * 4);
          enc.copyBufferToBuffer(lb.valid, (b * S + from) * 4, valid.buffer, (b * W + to) * 4, n * 4);
        }
      }
      return {k: k.tensor, v: v.tensor, valid: valid.tensor} as unknown as LayerState;
    });
    this.flushTf();
    this.device.queue.submit([enc.finish()]);
    return layers;
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
  async profileStep(ids: number[], positions: number[]): Promise<{logits: tf.Tensor, timings: DispatchTiming[] | null}> {
    if (!this.device.features.has('timestamp-query')) return {logits: this.step(ids, positions), timings: null};
    const n = this.dispatches.length;
    const querySet = this.device.createQuerySet({type: 'timestamp', count: 2 * n});
    const resolve = this.device.createBuffer({size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC});
    const read = this.device.createBuffer({size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const logits = this.run(ids, positions, {querySet, resolve, read});
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    [read, resolve].forEach((b) => b.destroy());
    querySet.destroy();
    const timings = this.dispatches.map((d, i) => ({name: d.name, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6, bytes: d.bytes}));
    return {logits, timings};
  }

  private run(ids: number[], positions: number[], prof: {querySet: GPUQuerySet, resolve: GPUBuffer, read: GPUBuffer} | null): tf.Tensor {
    this.check();
    const B = this.B, V = this.model.config.vocab_size, L = this.step_;
    if (ids.length !== B || positions.length !== B) throw new Error(`fused decode: ${ids.length} ids for ${B} rows`);
    const words = new Uint32Array(L.words);
    const f = new Float32Array(words.buffer);
    for (let b = 0; b < B; b++) {
      const id = ids[b];
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
      words[L.ids + b] = id;
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
    this.device.queue.writeBuffer(this.stepBuf, 0, words);
    this.flushTf();
    const cmds: GPUCommandBuffer[] = [];
    if (prof == null) {
      // The dispatches do not depend on the step (its ids and slots are in stepBuf), so they were
      // encoded ahead, while the GPU ran the previous step.
      cmds.push(this.nextDispatches ?? this.encodeDispatches());
      this.nextDispatches = null;
    }
    const enc = this.device.createCommandEncoder();
    if (prof != null) {
      this.dispatches.forEach((d, i) => {
        const pass = enc.beginComputePass({timestampWrites: {querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1}});
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bind);
        pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
        pass.end();
      });
      enc.resolveQuerySet(prof.querySet, 0, 2 * this.dispatches.length, prof.resolve, 0);
      enc.copyBufferToBuffer(prof.resolve, 0, prof.read, 0, 16 * this.dispatches.length);
    }
    const out = this.newTensor([B, V]);
    enc.copyBufferToBuffer(this.logitsBuf, 0, out.buffer, 0, B * V * 4);
    cmds.push(enc.finish());
    this.device.queue.submit(cmds);
    // Encoding ~150 dispatches costs the host about a millisecond: done now, it overlaps this step's GPU time.
    if (prof == null) this.nextDispatches = this.encodeDispatches();
    this.head = (this.head + 1) % this.S;
    this.convNext = (this.convNext + 1) % this.model.config.conv1d_width;
    return out.tensor;
  }

  /** One step's dispatches, in one compute pass. */
  private encodeDispatches(): GPUCommandBuffer {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const d of this.dispatches) {
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
    for (const b of this.owned) b.destroy();
  }

  get isDisposed(): boolean { return this.disposed; }

  private check(): void {
    if (this.disposed) throw new Error('fused decode: the engine has been disposed');
  }

  /** Submits what tfjs has encoded so far, so that it runs before this engine's commands. */
  private flushTf(): void {
    if (this.backend.commandEncoder != null) {
      this.backend.endComputePassEncoder();
      this.backend.submitQueue();
    }
  }

  /** The GPU buffer of a tensor (uploaded first if its data is still on the host). */
  private tensorBuffer(t: tf.Tensor): GPUBuffer {
    if (t.dtype !== 'float32') throw new Error(`fused decode: ${t.dtype} tensors are not supported`);
    this.backend.uploadToGPU(t.dataId);
    const r = this.backend.tensorMap.get(t.dataId)?.resource;
    if (!(r instanceof GPUBuffer)) throw new Error('fused decode: a tensor is not held in a GPU buffer');
    return r;
  }

  /** A weight's buffer, recorded so that isCurrent() notices when it changes. */
  private buf(get: () => tf.Tensor): GPUBuffer {
    const t = get();
    const r = this.tensorBuffer(t);
    this.bound.push({t: get, dataId: t.dataId, buffer: r});
    return r;
  }

  /** A new float32 tf tensor whose GPU buffer this engine fills (tfjs owns and frees it). */
  private newTensor(shape: number[]): {tensor: tf.Tensor, buffer: GPUBuffer} {
    const info = this.backend.makeTensorInfo(shape, 'float32');
    this.backend.uploadToGPU(info.dataId);
    const buffer = this.backend.tensorMap.get(info.dataId)!.resource as GPUBuffer;
    const tensor = tf.engine().makeTensorFromTensorInfo(info, this.backend as unknown as tf.KernelBackend);
    return {tensor, buffer};
  }

  private add(name: string, code: string, buffers: GPUBuffer[], grid: [number, number, number], bytes = 0): void {
    let cache = pipelineCache.get(this.device);
    if (cache == null) pipelineCache.set(this.device, cache = new Map());
    let pipeline = cache.get(code);
    if (pipeline == null) {
      const module = this.device.createShaderModule({code, label: name});
      pipeline = this.device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}, label: name});
      cache.set(code, pipeline);
    }
    buffers.forEach((b, i) => { if (b == null) throw new Error(`fused decode: ${name}: binding ${i} missing`); });
    const bind = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, i) => ({binding: i, resource: {buffer}})),
      label: name,
    });
    this.dispatches.push({pipeline, bind, grid, name, bytes});
  }
}
