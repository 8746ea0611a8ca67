/**
 * What the benchmarks share: arguments, backend start-up, a description of the machine and the
 * GPU adapter, timing, dispatch counting, the printed table and the JSON result file.
 *   const args = parseArgs(process.argv.slice(2));  const env = await setup(args.backend);
 *   const {ms} = await timeIt(() => [tf.matMul(x, weight, false, true)], {reps: 5});   // median, synced
 *   printTable([{op: 'matMul', ms}], ['op', 'ms']);  emit({env: describe(env), ms}, args.json);
 */

import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type {LayerVariable} from '../../layers/base';
import {CompactParameter} from '../../layers/compact';
import {type CompactSpec, type PackedMatrix, quantize, weightSpec} from '../../ops/compact/format';
import {useBackend} from '../backend';
import {parameterCount, RecurrentGemmaConfig, RecurrentGemmaConfigArgs} from '../config';
import {RecurrentGemmaForCausalLM} from '../model';
import {SMALL_CONFIG} from '../pretrain/small';
import {tf} from '../tf';
import {Rng} from '../util/rng';

export type Args = Record<string, string>;

/** `--name value`, `--name=value` and bare `--flag` (= 'true'). */
export function parseArgs(argv: string[]): Args {
  const out: Args = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(argv[i])} (options are --name value)`);
    out[m[1]] = m[2] ?? (argv[i + 1] != null && !argv[i + 1].startsWith('--') ? argv[++i] : 'true');
  }
  return out;
}

/** A comma-separated list of positive integers. */
export function intList(v: string | undefined, dflt: number[], name: string): number[] {
  if (v == null) return dflt;
  const out = v.split(',').map(Number);
  if (out.some((x) => !Number.isInteger(x) || x < 1))
    throw new Error(`--${name} must be positive integers separated by commas, got ${v}`);
  return out;
}

export function intArg(args: Args, name: string, dflt: number): number {
  const v = args[name] == null ? dflt : Number(args[name]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be an integer >= 0, got ${args[name]}`);
  return v;
}

/** RecurrentGemma-2B's shape (CONFIGS 2b; mid keeps its widths). */
const TWO_B: RecurrentGemmaConfigArgs = {
  num_hidden_layers: 26,
  vocab_size: 256000,
  hidden_size: 2560,
  lru_width: 2560,
  intermediate_size: 15360,
  num_attention_heads: 10,
  num_key_value_heads: 1,
  attention_window_size: 2048,
  conv1d_width: 4,
  block_types: ['recurrent', 'recurrent', 'attention'],
};

/**
 * Named model shapes for random-weight benchmarks.
 * - tiny: test/fixtures/tiny-a's shape.
 * - small: the shipped model's (src/pretrain/small.ts SMALL_CONFIG).
 * - 2b: RecurrentGemma-2B as released (its config.json; HF's class defaults differ in
 *   intermediate_size and kv heads): 2.7B parameters, 10.7 GB in float32.
 * - 9b: RecurrentGemma-9B's shape (hidden 4096, 38 layers, 16 heads, 1 kv head, MLP 3 x 4096):
 *   about 8.6B parameters, 34 GB in float32 (from the released config as recalled, not checked against the file here).
 * - mid: a 2B-like block (2560 wide, 6 layers, vocab 32000) that fits a small machine.
 * `--layers N` / `--vocab N` shrink any of them (bench/model.ts, griffin bench).
 */
export const CONFIGS: Record<string, RecurrentGemmaConfigArgs> = {
  tiny: {
    num_hidden_layers: 4,
    vocab_size: 512,
    hidden_size: 64,
    lru_width: 64,
    intermediate_size: 192,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    attention_window_size: 64,
    block_types: ['recurrent', 'recurrent', 'attention'],
  },
  small: SMALL_CONFIG,
  '2b': TWO_B,
  '9b': {
    num_hidden_layers: 38,
    vocab_size: 256000,
    hidden_size: 4096,
    lru_width: 4096,
    intermediate_size: 24576,
    num_attention_heads: 16,
    num_key_value_heads: 1,
    attention_window_size: 2048,
    conv1d_width: 4,
    block_types: ['recurrent', 'recurrent', 'attention'],
  },
  mid: {...TWO_B, num_hidden_layers: 6, vocab_size: 32000},
};

/**
 * Parameters of a config without building it (on wasm, building a model past its 4 GiB heap
 * fails with "memory access out of bounds"; the suite checks first). Untied LM head included.
 */
/** The model's shape as results record it. */
export function modelShape(model: {config: RecurrentGemmaConfig; countParams(): number}) {
  const c = model.config;
  return {
    layers: c.num_hidden_layers,
    hidden: c.hidden_size,
    lru: c.lru_width,
    intermediate: c.intermediate_size,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads,
    window: c.attention_window_size,
    vocab: c.vocab_size,
    params: model.countParams(),
  };
}

export function paramCount(args: RecurrentGemmaConfigArgs): number {
  return parameterCount(new RecurrentGemmaConfig(args));
}

/** A named config, optionally shrunk; a one-line error for an unknown name. */
export function benchConfig(name: string, opts: {layers?: number; vocab?: number} = {}): RecurrentGemmaConfigArgs {
  const base = CONFIGS[name];
  if (base == null)
    throw new Error(`--config must be one of ${Object.keys(CONFIGS).join(', ')}, got ${JSON.stringify(name)}`);
  const cfg = {...base};
  if (opts.layers != null) cfg.num_hidden_layers = opts.layers;
  if (opts.vocab != null) cfg.vocab_size = opts.vocab;
  return cfg;
}

/** --config NAME (default `dflt`), shrunk by --layers N / --vocab N: benchConfig from the options. */
export function configArg(args: Args, dflt: string): RecurrentGemmaConfigArgs {
  return benchConfig(args.config ?? dflt, {
    layers: args.layers != null ? intArg(args, 'layers', 1) : undefined,
    vocab: args.vocab != null ? intArg(args, 'vocab', 1) : undefined,
  });
}

/** --dtype bfloat16|float16|int8|int4 [--group-size G] [--zero-points] as a compact spec (float32: null). */
export function compactArg(args: Args): CompactSpec | null {
  return weightSpec(args.dtype ?? 'float32', {
    groupSize: args['group-size'] != null ? intArg(args, 'group-size', 64) : undefined,
    zeroPoints: args['zero-points'] != null,
  });
}

/** Uniform noise of std 1/sqrt(fan-in) for matrices, small noise for vectors (norms, biases). */
export function randomizeWeights(
  model: RecurrentGemmaForCausalLM,
  onProgress?: (done: number, total: number) => void,
): void {
  const vars = [...model.namedParameters().values()] as LayerVariable[];
  // Compact matrices: packed on the host once per shape (the float32 values never reach the
  // device; quantizing 2.7B values per run would take minutes), the same words for every
  // matrix of that shape: what a speed measure needs.
  const packed = new Map<string, PackedMatrix>();
  vars.forEach((v, i) => {
    const shape = v.shape as number[];
    const scale = shape.length >= 2 ? Math.sqrt(3 / shape[shape.length - 1]) : 0.1;
    if (v instanceof CompactParameter) {
      const key = shape.join('x');
      let p = packed.get(key);
      if (p == null) {
        const rng = new Rng(i + 1);
        const values = Float32Array.from({length: shape[0] * shape[1]}, () => (rng.next() * 2 - 1) * scale);
        p = quantize(values, shape[0], shape[1], v.spec, {plain: true});
        packed.set(key, p);
      }
      v.writePacked(p);
      onProgress?.(i + 1, vars.length);
      return;
    }
    const t = randomTensor(shape, -scale, scale, i + 1);
    v.write(t);
    t.dispose();
    onProgress?.(i + 1, vars.length);
  });
}

/**
 * The model a bench script runs: --model DIR loaded, or a random --config model (configArg,
 * compactArg) named `config` (default 'tiny') with randomizeWeights, or with tfjs's own random
 * initialisers where `tfjsInit` (slow for billions of parameters).
 */
export async function benchModel(
  args: Args,
  opts: {config?: string; tfjsInit?: boolean} = {},
): Promise<{model: RecurrentGemmaForCausalLM; name: string}> {
  if (args.model) return {model: await RecurrentGemmaForCausalLM.fromPretrained(args.model), name: args.model};
  const cfg = configArg({...args, config: opts.config ?? args.config}, 'tiny');
  const model = new RecurrentGemmaForCausalLM(cfg, {
    compact: compactArg(args),
    init: opts.tfjsInit ? 'random' : 'zeros',
  });
  if (!opts.tfjsInit) randomizeWeights(model);
  return {model, name: args.config ?? 'tiny'};
}

/** Token ids in [3, vocab) from a small LCG (reproducible, no special tokens). */
export function randomIds(b: number, t: number, vocab: number, seed: number): number[][] {
  let s = seed;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s;
  };
  return Array.from({length: b}, () => Array.from({length: t}, () => 3 + (next() % (vocab - 3))));
}

/** ||a - b|| / ||b|| (the norm of b floored at 1e-15): how far a fused path's output is from the tfjs one. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0,
    den = 0;
  for (let j = 0; j < b.length; j++) {
    num += (a[j] - b[j]) ** 2;
    den += b[j] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * The fused engine's logits against tfjs's (relativeError, 3 significant digits) on 64 random
 * tokens per row: `pass(ids, fused)` runs one pass with the engine on or off and returns what
 * holds its logits (a state, a forward's output), disposed once they are read.
 */
export async function fusedVsTfjs(
  batch: number,
  vocab: number,
  pass: (ids: number[][], fused: boolean) => {logits: tf.Tensor; dispose(): void},
): Promise<number> {
  const ids = randomIds(batch, 64, vocab, 5);
  const logits = async (fused: boolean) => {
    const out = pass(ids, fused);
    const data = Float32Array.from((await out.logits.data()) as Float32Array);
    out.dispose();
    return data;
  };
  return +relativeError(await logits(true), await logits(false)).toExponential(2);
}

/** RgLruScan's inputs for a bandwidth run, made on the backend (no host copy under webgpu). */
export function scanInputs(b: number, t: number, e: number) {
  return {
    a: randomTensor([b, t, e], 0.5, 0.999, 1),
    x: randomTensor([b, t, e], -1, 1, 2),
    h0: randomTensor([b, e], -1, 1, 3),
    dh: randomTensor([b, t, e], -1, 1, 4),
    dhLast: randomTensor([b, e], -1, 1, 5),
  };
}

/**
 * Bytes RgLruScan must move (float32): forward reads a, x [b,t,e] and h0 [b,e], writes h and
 * hLast; backward reads a, h, dh, h0, dhLast and writes dx, da, dh0.
 */
export function scanBytes(pass: 'fwd' | 'bwd', b: number, t: number, e: number): number {
  return pass === 'fwd' ? (3 * b * t * e + 2 * b * e) * 4 : (5 * b * t * e + 3 * b * e) * 4;
}

/** Linux's peak resident set of this process (VmHWM), in bytes; null elsewhere. */
export function peakRssBytes(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Memory seen so far: the peak resident set (the kernel's VmHWM, exact, where it exists; else
 * the largest RSS sampled) and the largest JS heap, external / ArrayBuffer bytes and tfjs
 * tensor bytes (tf.memory(); numBytesInGPU on webgpu) at the sample points. JavaScript runs
 * kernels synchronously, so samples are taken between phases (`sample()`) and by a timer
 * between awaits; the RSS peak is the one number that covers what happens inside a kernel.
 */
export class MemoryWatch {
  peak = {rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0, tfBytes: 0, tfGpuBytes: 0};
  private timer: ReturnType<typeof setInterval> | null = null;

  start(everyMs = 50): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref?.();
    return this;
  }

  sample(): void {
    const m = process.memoryUsage();
    const tm = tf.memory() as {numBytes: number; numBytesInGPU?: number};
    const p = this.peak;
    p.rss = Math.max(p.rss, m.rss, peakRssBytes() ?? 0);
    p.heapUsed = Math.max(p.heapUsed, m.heapUsed);
    p.external = Math.max(p.external, m.external);
    p.arrayBuffers = Math.max(p.arrayBuffers, m.arrayBuffers);
    p.tfBytes = Math.max(p.tfBytes, tm.numBytes);
    p.tfGpuBytes = Math.max(p.tfGpuBytes, tm.numBytesInGPU ?? 0);
  }

  stop(): void {
    if (this.timer != null) clearInterval(this.timer);
    this.timer = null;
    this.sample();
  }

  /** The peaks in MiB (and the source of the RSS figure). */
  report(): Record<string, number | string> {
    const mb = (x: number) => +(x / 2 ** 20).toFixed(1);
    const p = this.peak;
    return {
      peakRssMB: mb(p.rss),
      rssSource: peakRssBytes() != null ? 'VmHWM' : 'sampled',
      peakHeapUsedMB: mb(p.heapUsed),
      peakExternalMB: mb(p.external),
      peakArrayBuffersMB: mb(p.arrayBuffers),
      peakTfMB: mb(p.tfBytes),
      ...(p.tfGpuBytes > 0 ? {peakTfGpuMB: mb(p.tfGpuBytes)} : {}),
    };
  }
}

export interface Environment {
  date: string;
  host: string;
  node: string;
  platform: string;
  cpu: string;
  cpus: number;
  memGiB: number;
  tfjs: string;
  backend: string;
  /** webgpu only: what Dawn reports about the adapter, and the limits of the device tfjs opened. */
  adapter?: Record<string, unknown>;
  env: Record<string, string>;
}

/**
 * Starts the backend (webgpu: Dawn; on a machine without a GPU set VK_ICD_FILENAMES to
 * SwiftShader's ICD, see bench/README.md) and describes the machine.
 */
export async function setup(backend: string | undefined): Promise<Environment> {
  const name = backend ?? 'webgpu';
  if (!['cpu', 'wasm', 'webgpu'].includes(name)) throw new Error(`--backend must be webgpu, cpu or wasm, got ${name}`);
  await useBackend(name);
  return describeMachine(name);
}

/** The machine and the running backend (after useBackend). */
export async function describeMachine(requested?: string): Promise<Environment> {
  const name = requested ?? tf.getBackend();
  const env: Environment = {
    date: new Date().toISOString(),
    host: os.hostname(),
    node: process.version,
    platform: `${process.platform}-${process.arch} ${os.release()}`,
    cpu: os.cpus()[0]?.model ?? '?',
    cpus: os.cpus().length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    // The Vulkan driver files and every GRIFFIN_ knob set (tunings, toggles: they change the figures).
    env: Object.fromEntries(
      Object.keys(process.env)
        .filter((k) => k === 'VK_ICD_FILENAMES' || k === 'VK_DRIVER_FILES' || k.startsWith('GRIFFIN_'))
        .sort()
        .map((k) => [k, process.env[k]!]),
    ),
  };
  if (name === 'webgpu') env.adapter = await describeAdapter();
  return env;
}

/** The adapter Dawn gives for high-performance (the one tfjs picks too), and tfjs's device limits. */
async function describeAdapter(): Promise<Record<string, unknown>> {
  const gpu = (
    globalThis as unknown as {
      navigator: {
        gpu: {requestAdapter(o: object): Promise<{info?: Record<string, unknown>; features: Set<string>} | null>};
      };
    }
  ).navigator.gpu;
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  const info: Record<string, unknown> = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'backendType', 'adapterType']) {
    const v = adapter?.info?.[k];
    if (v != null && v !== '') info[k] = v;
  }
  const backend = tf.backend() as unknown as {
    device: {limits: Record<string, number>};
    adapterInfo?: object;
    supportTimestampQuery?: boolean;
  };
  const limits = backend.device.limits;
  info.limits = Object.fromEntries(
    [
      'maxStorageBufferBindingSize',
      'maxBufferSize',
      'maxComputeWorkgroupStorageSize',
      'maxComputeInvocationsPerWorkgroup',
      'maxComputeWorkgroupsPerDimension',
    ].map((k) => [k, limits[k]]),
  );
  info.features = adapter ? [...adapter.features].sort() : [];
  info.tfjsAdapterInfo = backend.adapterInfo;
  info.timestampQuery = backend.supportTimestampQuery ?? false;
  return info;
}

/** One line about the machine for the table's header. */
export function describe(env: Environment): string {
  const a = env.adapter as
    | {description?: string; vendor?: string; architecture?: string; backendType?: string}
    | undefined;
  const gpu = a
    ? `, adapter: ${a.description || [a.vendor, a.architecture].filter(Boolean).join(' ') || '?'}${a.backendType ? ` (${a.backendType})` : ''}`
    : '';
  return `${env.backend} on ${env.host} (${env.cpus} x ${env.cpu}, node ${env.node}, tfjs ${env.tfjs}${gpu})`;
}

/**
 * Waits until the backend has finished computing `t`: reads one element (on webgpu this submits
 * the queue and waits for it; reading the whole tensor would time the copy too).
 */
export async function syncOn(t: tf.Tensor): Promise<void> {
  if (t.size === 0) return;
  const one = tf.tidy(() => tf.slice(tf.reshape(t, [-1]), [0], [1]));
  await one.data();
  one.dispose();
}

export interface Timing {
  ms: number;
  minMs: number;
  maxMs: number;
  reps: number;
  inner: number;
}

/**
 * Median wall time of `run` (after `warmup` untimed runs: shader compilation, buffer pools).
 * `run` returns the tensors it made; the first is synchronised on, all are disposed. With
 * `inner` > 1 (or 'auto': enough calls for ~20 ms) each sample queues that many calls and waits
 * once, so that a short kernel is not timed together with the read-back that waits for it.
 */
export async function timeIt(
  run: () => tf.Tensor[],
  opts: {reps?: number; warmup?: number; inner?: number | 'auto'} = {},
): Promise<Timing> {
  const reps = Math.max(1, opts.reps ?? 5),
    warmup = opts.warmup ?? 1;
  const sample = async (n: number) => {
    const t0 = performance.now();
    for (let k = 0; k < n; k++) {
      const out = run();
      if (k === n - 1) await syncOn(out[0]);
      tf.dispose(out); // the backend keeps the buffers until the queued work is done
    }
    return (performance.now() - t0) / n;
  };
  for (let i = 0; i < warmup; i++) await sample(1);
  let inner =
    opts.inner === 'auto'
      ? Math.min(200, Math.max(1, Math.ceil(20 / (await sample(1)))))
      : Math.max(1, opts.inner ?? 1);
  if (!Number.isFinite(inner)) inner = 1;
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await sample(inner));
  times.sort((a, b) => a - b);
  const round = (x: number) => +x.toFixed(4);
  return {
    ms: round(times[Math.floor(times.length / 2)]),
    minMs: round(times[0]),
    maxMs: round(times[times.length - 1]),
    reps,
    inner,
  };
}

/**
 * Counts, while installed, the tfjs kernels run (any backend) and the GPU programs dispatched
 * (webgpu: calls of backend.runWebGPUProgram; one kernel may dispatch several or none).
 */
export class DispatchCounter {
  kernels = 0;
  dispatches = 0;
  readonly byProgram = new Map<string, number>();
  private undo: (() => void)[] = [];

  install(): this {
    const engine = tf.engine() as unknown as {runKernelFunc(p: unknown): unknown};
    const runKernelFunc = engine.runKernelFunc;
    const self = this;
    engine.runKernelFunc = function (this: unknown, p: unknown) {
      self.kernels++;
      return runKernelFunc.call(this, p);
    };
    this.undo.push(() => {
      engine.runKernelFunc = runKernelFunc;
    });
    if (tf.getBackend() === 'webgpu') {
      const backend = tf.backend() as unknown as {
        runWebGPUProgram(p: {constructor: {name: string}}, ...rest: unknown[]): unknown;
      };
      const run = backend.runWebGPUProgram;
      backend.runWebGPUProgram = function (this: unknown, p: {constructor: {name: string}}, ...rest: unknown[]) {
        self.dispatches++;
        self.byProgram.set(p.constructor.name, (self.byProgram.get(p.constructor.name) ?? 0) + 1);
        return run.call(this, p, ...rest);
      };
      this.undo.push(() => {
        backend.runWebGPUProgram = run;
      });
    }
    return this;
  }

  reset(): void {
    this.kernels = 0;
    this.dispatches = 0;
    this.byProgram.clear();
  }

  /** The counts so far, programs by frequency. */
  snapshot(): {kernels: number; dispatches: number; byProgram: Record<string, number>} {
    return {
      kernels: this.kernels,
      dispatches: this.dispatches,
      byProgram: Object.fromEntries([...this.byProgram].sort((a, b) => b[1] - a[1])),
    };
  }

  uninstall(): void {
    this.undo.reverse().forEach((f) => f());
    this.undo = [];
  }
}

/**
 * Uniform noise in [lo, hi) from a hash of (index, seed), computed on the GPU: host-side random
 * numbers for 2.7B parameters or a 600 MB scan input take minutes and a copy.
 */
class HashFillProgram implements WebGPUProgram {
  variableNames: string[] = [];
  outputShape: number[];
  shaderKey = 'benchHashFill';
  dispatchLayout = {x: [0]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;
  uniforms = 'seed : i32, lo : f32, hi : f32,';

  constructor(n: number) {
    this.outputShape = [n];
    this.dispatch = [Math.ceil(n / 64), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index >= uniforms.size) { return; }
        // PCG hash of (index, seed).
        var h = u32(index) * 747796405u + u32(uniforms.seed) * 2891336453u + 1u;
        h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
        h = (h >> 22u) ^ h;
        result[index] = uniforms.lo + (uniforms.hi - uniforms.lo) * (f32(h >> 8u) * 5.9604644775390625e-8);
      }`;
  }
}

/** A float32 tensor of uniform noise in [lo, hi): on the GPU under webgpu, else tf.randomUniform. */
export function randomTensor(shape: number[], lo: number, hi: number, seed: number): tf.Tensor {
  if (tf.getBackend() !== 'webgpu') return tf.randomUniform(shape, lo, hi, 'float32', seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const backend = tf.backend() as unknown as WebGPUBackend;
  const info = backend.runWebGPUProgram(new HashFillProgram(n), [], 'float32', [
    {type: 'int32', data: [seed]},
    {type: 'float32', data: [lo]},
    {type: 'float32', data: [hi]},
  ]);
  const flat = tf.engine().makeTensorFromTensorInfo(info);
  const out = tf.reshape(flat, shape);
  flat.dispose();
  return out;
}

/** Prints rows as an aligned text table (numbers right-aligned). */
export function printTable(rows: Record<string, unknown>[], columns: string[]): void {
  const cell = (v: unknown) => (v == null ? '' : typeof v === 'number' ? String(+v.toPrecision(5)) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[], numeric: boolean[]) =>
    vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ');
  console.log(
    line(
      columns,
      columns.map(() => false),
    ),
  );
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows)
    console.log(
      line(
        columns.map((c) => cell(r[c])),
        columns.map((c) => typeof r[c] === 'number'),
      ),
    );
}

/** Prints the JSON result and, with --out, writes it (bench/results/<date>-<machine>.json by convention). */
export function emit(result: object, out: string | undefined): void {
  const text = JSON.stringify(result, null, 2);
  console.log(text);
  if (out != null && out !== 'true') {
    fs.mkdirSync(path.dirname(path.resolve(out)), {recursive: true});
    fs.writeFileSync(out, `${text}\n`);
    console.error(`written to ${out}`);
  }
}

/**
 * Runs one compute pass that `encode` fills and returns its time in ms: GPU timestamps around the
 * pass where the device has 'timestamp-query' (`stamps`), else wall time to onSubmittedWorkDone.
 */
export async function timedComputePass(
  dev: GPUDevice,
  stamps: boolean,
  encode: (pass: GPUComputePassEncoder) => void,
): Promise<number> {
  const qs = stamps ? dev.createQuerySet({type: 'timestamp', count: 2}) : null;
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass(
    qs ? {timestampWrites: {querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1}} : {},
  );
  encode(pass);
  pass.end();
  const resolve = qs
    ? dev.createBuffer({size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC})
    : null;
  const read = qs ? dev.createBuffer({size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST}) : null;
  if (qs && resolve && read) {
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  }
  const w0 = performance.now();
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
  const wall = performance.now() - w0;
  if (!qs || !read || !resolve) return wall;
  await read.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  [read, resolve].forEach((b) => b.destroy());
  qs.destroy();
  return Number(t[1] - t[0]) / 1e6;
}

/** Reports a failure as one line and sets the exit code. */
export function fail(script: string, e: unknown): void {
  console.error(`${script}: ${(e as Error)?.stack ?? e}`);
  process.exitCode = 1;
}
