/// <reference types="@webgpu/types" />
/**
 * GpuSampler: picks one token per row of a [b, V] float32 logits buffer on the GPU and reads back
 * only the ids (4 bytes per row). It owns its buffers (a copy of the logits, the seen-id bitmaps,
 * per-row parameters and state, histograms) and its pipelines and bind groups, made once; a call
 * encodes ~4-20 dispatches (shaders.ts) and one read-back. Plain WebGPU: the caller hands it the
 * device and the logits' GPUBuffer (src/generation/gpu_sampling.ts does that for tfjs tensors).
 *   const s = new GpuSampler(backend.device, V, 8, 8);   // up to 8 rows a call, 8 seen-id bitmaps
 *   s.setSeen(0, [2, 651, 6037]);                         // bitmap 0: the ids the penalty applies to
 *   const draw = (logitsBuffer: GPUBuffer) => s.sample(logitsBuffer, [{seenRow: 0, seed: 1, step: 0, temperature: 0.8}]);
 *
 * Shape letters: b rows of a call, V vocabulary.
 */
import {bindingNames, PARAM_WORDS, SampleShape, SW, sampleKernels, sampleShape} from './shaders';

/** How one row is drawn (the options of src/generation/sampling.ts, already validated). */
export interface RowSampling {
  /** The seen-id bitmap the repetition penalty reads (and the pick is added to). */
  seenRow: number;
  /** Philox key word 0; the counter is (step, 0, 0, 0). */
  seed: number;
  step: number;
  /** 0: greedy (the first index of the maximum, after the penalty). */
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
}

interface Kernel {
  pipeline: GPUComputePipeline;
  bind: GPUBindGroup;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export class GpuSampler {
  readonly shape: SampleShape;
  private readonly kernels = new Map<string, Kernel>();
  /** WGSL by kernel name; pipelines are made on first use (cached per device and source). */
  private readonly codes: Map<string, string>;
  private readonly bufs: Record<string, GPUBuffer> = {};
  private readonly read: GPUBuffer;
  private readonly errors: Promise<GPUError | null>;
  private disposed = false;

  constructor(
    readonly device: GPUDevice,
    V: number,
    readonly maxRows: number,
    readonly seenRows: number,
  ) {
    if (!(Number.isInteger(maxRows) && maxRows >= 1 && Number.isInteger(seenRows) && seenRows >= 1)) {
      throw new Error(`GpuSampler: rows ${maxRows} and bitmaps ${seenRows} must be integers >= 1`);
    }
    const s = (this.shape = sampleShape(V));
    device.pushErrorScope('validation');
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const words: Record<string, number> = {
      logits: maxRows * V,
      seen: seenRows * s.WV,
      params: maxRows * PARAM_WORDS,
      st: maxRows * SW,
      cnt: maxRows * 256,
      mass: maxRows * 512,
      chunks: maxRows * s.G * 3,
      picks: maxRows,
    };
    for (const [name, n] of Object.entries(words)) {
      this.bufs[name] = device.createBuffer({size: Math.ceil((n * 4) / 16) * 16, usage, label: `sample ${name}`});
    }
    this.read = device.createBuffer({
      size: Math.ceil((maxRows * 4) / 16) * 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.codes = sampleKernels(s);
    this.errors = device.popErrorScope();
  }

  /** Sets bitmap `row` to exactly these ids (the prompt, before the first pick). */
  setSeen(row: number, ids: Iterable<number>): void {
    this.check();
    if (!(Number.isInteger(row) && row >= 0 && row < this.seenRows))
      throw new RangeError(`seen row ${row} out of range`);
    const {V, WV} = this.shape;
    const bits = new Uint32Array(WV);
    for (const id of ids) {
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`seen id ${id} outside [0, ${V})`);
      bits[id >>> 5] |= 1 << (id & 31);
    }
    this.device.queue.writeBuffer(this.bufs.seen, row * WV * 4, bits);
  }

  /**
   * One id per row of `logits` (b = rows.length rows of V floats from byte `offset`); -1 for a row
   * with nothing to draw (every logit NaN). Commands that write `logits` must be submitted first.
   */
  async sample(logits: GPUBuffer, rows: RowSampling[], offset = 0): Promise<Int32Array> {
    await this.prepare(rows);
    const b = rows.length;
    const enc = this.device.createCommandEncoder();
    const picks = this.encode(enc, logits, rows, offset);
    enc.copyBufferToBuffer(picks, 0, this.read, 0, Math.ceil((b * 4) / 16) * 16);
    this.device.queue.submit([enc.finish()]);
    await this.read.mapAsync(GPUMapMode.READ, 0, Math.ceil((b * 4) / 16) * 16);
    const ids = new Int32Array(this.read.getMappedRange(0, Math.ceil((b * 4) / 16) * 16).slice(0, b * 4));
    this.read.unmap();
    return ids;
  }

  /** Builds (and checks) the kernels that calls with rows like these run; encode() needs them. */
  async prepare(rows: RowSampling[]): Promise<void> {
    this.check();
    const missing = this.plan(rows).filter((n) => !this.kernels.has(n));
    if (missing.length === 0) return;
    this.device.pushErrorScope('validation');
    for (const n of missing) this.build(n);
    const err = (await this.device.popErrorScope()) ?? (await this.errors);
    if (err != null) throw new Error(`GPU sampling kernels rejected: ${err.message}`);
  }

  /**
   * Encodes a draw (as sample() does) into `enc` and returns the buffer that then holds the ids
   * (int32 [b] from byte 0), without reading them back: the caller may copy them on the GPU (into
   * the next decode step) and read them later. The per-row parameters are written to the queue
   * now, so `enc` must be submitted before the next call's. prepare() first.
   */
  encode(enc: GPUCommandEncoder, logits: GPUBuffer, rows: RowSampling[], offset = 0): GPUBuffer {
    this.check();
    const b = rows.length;
    if (b < 1 || b > this.maxRows) throw new RangeError(`GpuSampler: ${b} rows, made for 1..${this.maxRows}`);
    const names = this.plan(rows);
    const missing = names.filter((n) => !this.kernels.has(n));
    if (missing.length > 0) throw new Error(`GpuSampler: kernels ${missing.join(', ')} not prepared`);
    this.device.queue.writeBuffer(this.bufs.params, 0, this.params(rows));
    this.encodeKernels(enc, logits, offset, b, names);
    return this.bufs.picks;
  }

  /** The per-row state words after the last call (tests: thresholds and cutoffs, see ST in shaders.ts). */
  async readState(b: number): Promise<Uint32Array> {
    const n = b * SW * 4;
    const tmp = this.device.createBuffer({size: n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.bufs.st, 0, tmp, 0, n);
    this.device.queue.submit([enc.finish()]);
    await tmp.mapAsync(GPUMapMode.READ);
    const out = new Uint32Array(tmp.getMappedRange().slice(0));
    tmp.unmap();
    tmp.destroy();
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of Object.values(this.bufs)) b.destroy();
    this.read.destroy();
  }

  /** Names of the dispatches a call with these rows runs, in order. */
  plan(rows: RowSampling[]): string[] {
    const sampled = rows.filter((r) => r.temperature > 0);
    const names = ['init', 'max'];
    if (sampled.length < rows.length) names.push('first');
    if (sampled.some((r) => topKOf(r, this.shape.V) > 0))
      for (let R = 0; R < 4; R++) names.push(`khist${R}`, `kpick${R}`);
    if (sampled.some((r) => topPqOf(r) > 0)) for (let R = 0; R < 4; R++) names.push(`phist${R}`, `ppick${R}`);
    if (sampled.length > 0) names.push('chunk');
    names.push('draw');
    return names;
  }

  private build(name: string): void {
    const code = this.codes.get(name)!;
    let cache = pipelineCache.get(this.device);
    if (cache == null) pipelineCache.set(this.device, (cache = new Map()));
    let pipeline = cache.get(code);
    if (pipeline == null) {
      pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: {module: this.device.createShaderModule({code, label: `sample ${name}`}), entryPoint: 'main'},
        label: `sample ${name}`,
      });
      cache.set(code, pipeline);
    }
    const entries = bindingNames(code).map((b, i) => ({binding: i, resource: {buffer: this.bufs[b]}}));
    const bind = this.device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries});
    this.kernels.set(name, {pipeline, bind});
  }

  private encodeKernels(enc: GPUCommandEncoder, logits: GPUBuffer, offset: number, b: number, names: string[]): void {
    const {V, G} = this.shape;
    enc.copyBufferToBuffer(logits, offset, this.bufs.logits, 0, b * V * 4);
    const pass = enc.beginComputePass();
    for (const name of names) {
      const k = this.kernels.get(name)!;
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, k.bind);
      const perRow = name === 'init' || name === 'draw' || name.startsWith('kpick') || name.startsWith('ppick');
      if (perRow) pass.dispatchWorkgroups(b);
      else pass.dispatchWorkgroups(G, b);
    }
    pass.end();
  }

  private params(rows: RowSampling[]): ArrayBuffer {
    const buf = new ArrayBuffer(rows.length * PARAM_WORDS * 4);
    const u = new Uint32Array(buf),
      f = new Float32Array(buf);
    rows.forEach((r, i) => {
      if (!(Number.isInteger(r.seenRow) && r.seenRow >= 0 && r.seenRow < this.seenRows)) {
        throw new RangeError(`seen row ${r.seenRow} out of range`);
      }
      const o = i * PARAM_WORDS;
      u[o] = r.seenRow;
      u[o + 1] = r.seed >>> 0;
      u[o + 2] = r.step >>> 0;
      u[o + 3] = r.temperature > 0 ? topKOf(r, this.shape.V) : 0;
      f[o + 4] = r.temperature;
      u[o + 5] = r.temperature > 0 ? topPqOf(r) : 0;
      f[o + 6] = r.temperature > 0 ? (r.minP ?? 0) : 0;
      f[o + 7] = r.repetitionPenalty ?? 1;
    });
    return buf;
  }

  private check(): void {
    if (this.disposed) throw new Error('GpuSampler: disposed');
  }
}

/** k, or 0 when top-k keeps everything (as the host sampler skips k >= V). */
function topKOf(r: RowSampling, V: number): number {
  return r.topK !== undefined && r.topK < V ? r.topK : 0;
}

/** p in 24-bit fixed point, or 0 when top-p is off (p >= 1). */
function topPqOf(r: RowSampling): number {
  return r.topP !== undefined && r.topP < 1 ? Math.max(1, Math.round(r.topP * 2 ** 24)) : 0;
}
