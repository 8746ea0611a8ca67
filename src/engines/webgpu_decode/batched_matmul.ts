/// <reference types="@webgpu/types" />
/**
 * The decode step's weight products for many rows: when the engine's tuning rows reach
 * decodeMatmulRows() (tuning.ts), each projection the plan would run as GEMVs (plan.ts gemv())
 * runs as the prefill engine's tiled matmul (webgpu_prefill/shaders/matmul.ts) with M = the
 * engine's rows, with the GEMV's epilogue: store (GeLU per segment), residual, multiply, GeGLU,
 * soft cap; fused RMSNorm and bias alike. The tile is picked from the tuning rows (never the
 * engine's own rows), so that every engine made with the same tuning rows sums a row in the same
 * order (the serve guarantee: FusedDecoderOptions.tuningRows).
 *   const p = decodeMatmulPlan(32, 2560, 2560, {dtype: 'bfloat16', groupSize: 0, zeroPoints: false}, 1, 32768);
 *   console.log(p.tuning.bm, p.tuning.bn, p.split);   // 32 rows x 128 columns per workgroup, K in 8 slices
 *
 * Tiles (bm x bn, thread tm x tn): bm = the tuning rows rounded up to 16, 32 or 64 (larger: the
 * prefill defaults), tm = bm / 4 (4 rows of threads), tn 4, bn 128 (64 past 32 rows); bn is
 * halved while the tiles overflow workgroup memory. GRIFFIN_DECODE_MM (the syntax of
 * GRIFFIN_PREFILL_MM: 'bm=32,bn=128,bk=16,tm=8,tn=4,...') then overrides any knob of that pick
 * for every product. While a product has fewer than GRIFFIN_DECODE_MM_WG workgroups (default
 * 132, one per SM of an H200; 0: never): split-K (the matmul's splitk, unless the override sets
 * it), K in 2, 4, ... slices (at most GRIFFIN_DECODE_MM_SPLIT, default 16; 4 K steps each at
 * least); past that (no override set) tm halved (more threads per tile, 256 at most), then bn (to
 * 16 columns and 16 threads at least). Split-K's partial sums go to a scratch buffer per engine;
 * a second dispatch (matmulReduceSource) adds them in order and finishes.
 * Dispatch names end in '@mm', '@mm-sum', '@mm-gate' ... (profiles tell them from the GEMVs').
 *
 * Shape letters: B the engine's rows (M), R its tuning rows, IN the input width (K), N a
 * segment's output columns, P 1 or 2 (GeGLU's gate and up).
 */
import type * as tf from '@tensorflow/tfjs';
import {envIntInRange} from '../../util/env';
import {
  MATMUL_DEFAULTS,
  type MatmulEpilogue,
  type MatmulSpec,
  type MatmulTuning,
  matmulBindings,
  matmulGrid,
  matmulPartFloats,
  matmulReduceGrid,
  matmulReduceSource,
  matmulSharedBytes,
  matmulSource,
  matmulTuning,
  parseMatmulTuning,
} from '../webgpu_prefill/shaders/matmul';
import type {GemvSpec} from './shaders';
import {matrixBytes, type WeightFormat} from './shaders/weights';
import {decodeMatmulApplies} from './tuning';

/** A weight matrix as bound: its format and buffers (plan.ts BoundMatrix). */
export interface MatmulMatrix {
  fmt: WeightFormat;
  w: GPUBuffer;
  s?: GPUBuffer;
  z?: GPUBuffer;
}

/** What the mapping needs of the plan's context (plan.ts Ctx). */
export interface MatmulCtx {
  readonly B: number;
  readonly tuneB: number;
  readonly host: {
    readonly limits: GPUSupportedLimits;
    own(floats: number): GPUBuffer;
    weight(get: () => tf.Tensor): GPUBuffer;
    /** A new buffer holding these words (the matmul's `dims`); without it the GEMVs stay. */
    constant?(words: Uint32Array): GPUBuffer;
    readonly encoder: GPUCommandEncoder;
  };
}

/** A planned dispatch (plan.ts PlannedDispatch). */
export interface MatmulDispatch {
  readonly name: string;
  readonly code: string;
  readonly bindings: Readonly<Partial<Record<string, GPUBuffer>>>;
  readonly grid: [number, number, number];
  readonly bytes: number;
}

function envText(name: string): string {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  return v ?? '';
}

/** Workgroups below which the pick narrows its tiles (GRIFFIN_DECODE_MM_WG; default 132). */
function minWorkgroups(): number {
  return envIntInRange('GRIFFIN_DECODE_MM_WG', 132, 0, 1_000_000);
}

/** Most K slices per product (GRIFFIN_DECODE_MM_SPLIT; default 16; 1: no split-K). */
function maxSplit(): number {
  return envIntInRange('GRIFFIN_DECODE_MM_SPLIT', 16, 1, 64);
}

/** A product's tiling: the matmul's tuning and its K slices (tuning.splitk; 1: no split). */
export interface DecodeMatmulPlan {
  tuning: MatmulTuning;
  split: number;
}

/**
 * The tiling for products of R tuning rows into N columns over K (see the header); a full
 * tuning, so that GRIFFIN_PREFILL_MM does not reach the decode products. Throws a one-line error
 * on a bad override.
 */
export function decodeMatmulPlan(
  R: number,
  N: number,
  K: number,
  weight: WeightFormat,
  P: 1 | 2,
  sharedLimit: number,
): DecodeMatmulPlan {
  let t: MatmulTuning;
  if (R > 64) {
    t = {...MATMUL_DEFAULTS};
  } else {
    const bm = R <= 16 ? 16 : R <= 32 ? 32 : 64;
    t = {...MATMUL_DEFAULTS, bm, tm: bm / 4, tn: 4, bn: bm <= 32 ? 128 : 64, bk: 16};
  }
  const spec: MatmulSpec = {N, K, weight, epilogue: P === 2 ? 'geglu' : 'store'};
  while (matmulSharedBytes(spec, t) > sharedLimit && t.bn > 16) t = {...t, bn: t.bn / 2};
  const env = envText('GRIFFIN_DECODE_MM');
  if (env !== '') t = {...t, ...parseMatmulTuning(env)};
  const want = minWorkgroups();
  const tiles = (x: MatmulTuning) => Math.ceil(N / x.bn) * Math.ceil(R / x.bm);
  // Split-K (unless set by hand): slices of 4 K steps at least.
  const nK = Math.ceil(K / t.bk);
  let split = t.splitk;
  if (split === 1) {
    const most = maxSplit();
    while (tiles(t) * split < want && split * 2 <= most && nK % (split * 2) === 0 && nK / (split * 2) >= 4) split *= 2;
  }
  t = {...t, splitk: split};
  // Still too few (and no tile set by hand): more threads per tile, then narrower tiles.
  const threads = (x: MatmulTuning) => (x.bm / x.tm) * (x.bn / x.tn);
  while (env === '' && tiles(t) * split < want) {
    if (t.tm > 4 && threads({...t, tm: t.tm / 2}) <= 256) t = {...t, tm: t.tm / 2};
    else if (t.bn > 16 && threads({...t, bn: t.bn / 2}) >= 16) t = {...t, bn: t.bn / 2};
    else break;
  }
  return {tuning: matmulTuning(spec, t), split};
}

/** Whether an engine tuned for R rows runs its products as matmuls (and its host can make `dims`). */
export function usesDecodeMatmul(ctx: MatmulCtx): boolean {
  return decodeMatmulApplies(ctx.tuneB) && ctx.host.constant != null;
}

/** The `dims` buffer (M = B) of each plan host. */
const dimsOf = new WeakMap<object, GPUBuffer>();

function dims(ctx: MatmulCtx): GPUBuffer {
  let d = dimsOf.get(ctx.host);
  if (d == null) {
    d = ctx.host.constant!(new Uint32Array([ctx.B, 0, 0, 0]));
    dimsOf.set(ctx.host, d);
  }
  return d;
}

/** GEMV options minus the plan's tuning (plan.ts gemv()'s spec). */
export type ProjectionSpec = Omit<GemvSpec, 'R' | 'T' | 'weights' | 'words' | 'bias'>;

/** Scratch buffers per plan host (split-K's partial sums), grown as needed. */
const scratchOf = new WeakMap<object, Map<string, {buf: GPUBuffer; floats: number}>>();

function scratch(ctx: MatmulCtx, key: string, floats: number): GPUBuffer {
  let m = scratchOf.get(ctx.host);
  if (m == null) {
    m = new Map();
    scratchOf.set(ctx.host, m);
  }
  const have = m.get(key);
  if (have != null && have.floats >= floats) return have.buf;
  const buf = ctx.host.own(floats);
  m.set(key, {buf, floats});
  return buf;
}

/**
 * The matmul dispatches replacing one projection's GEMVs (plan.ts gemv(): same arguments), or
 * null where they do not apply (rows below the threshold, a width not a multiple of 4, a compact
 * load that does not fit the tile): the GEMVs then stay. A product with too few tiles for the GPU
 * runs split-K (the matmul's splitk): its K slices in one dispatch into a scratch buffer, then
 * one (`-sum`) that adds them in order and applies norm, bias and epilogue.
 */
export function matmulProjection(
  ctx: MatmulCtx,
  name: string,
  spec: ProjectionSpec,
  mats: MatmulMatrix[],
  biases: tf.Tensor[] | null,
  io: {x: GPUBuffer; g?: GPUBuffer; out: GPUBuffer},
): MatmulDispatch[] | null {
  if (!usesDecodeMatmul(ctx)) return null;
  const fmt = mats[0].fmt;
  const limits = ctx.host.limits;
  const shared = limits.maxComputeWorkgroupStorageSize;
  const R = ctx.tuneB,
    K = spec.IN;
  const norm = spec.norm ? {eps: spec.eps ?? 1e-6} : undefined;
  const base = spec.outOffset ?? 0;
  /** One product (GeGLU: the pair or one of its halves) and its tiling. */
  interface Part {
    label: string;
    spec: MatmulSpec;
    mats: MatmulMatrix[];
    bias?: () => GPUBuffer;
    tuning: MatmulTuning;
  }
  const parts: Part[] = [];
  const mspec = (N: number, epilogue: MatmulEpilogue, outOffset: number): MatmulSpec => ({
    N,
    K,
    weight: fmt,
    norm,
    bias: biases != null,
    epilogue,
    cap: spec.cap,
    outStride: spec.outStride,
    outOffset,
  });
  try {
    const one = (k: number, label: string, epilogue: MatmulEpilogue, N: number, outOffset: number): Part => ({
      label,
      spec: mspec(N, epilogue, outOffset),
      mats: [mats[k]],
      bias: biases == null ? undefined : () => ctx.host.weight(() => biases[k]),
      tuning: decodeMatmulPlan(R, N, K, fmt, 1, shared).tuning,
    });
    if (spec.mode === 'geglu') {
      const m = spec.segments[0];
      const whole = mspec(m, 'geglu', base);
      const tuning = decodeMatmulPlan(R, m, K, fmt, 2, shared).tuning;
      if (matmulBindings(whole, tuning).length <= limits.maxStorageBuffersPerShaderStage) {
        const bias = biases == null ? undefined : () => packBiases(ctx, biases);
        parts.push({label: `${name}@mm`, spec: whole, mats, bias, tuning});
      } else {
        parts.push(one(0, `${name}@mm-gate`, 'gelu', m, base), one(1, `${name}@mm-up`, 'mul', m, base));
      }
    } else {
      let start = base;
      spec.segments.forEach((n, k) => {
        const ep = spec.mode === 'store' && spec.gelu?.[k] ? 'gelu' : (spec.mode as MatmulEpilogue);
        parts.push(one(k, spec.segments.length > 1 ? `${name}@mm${k}` : `${name}@mm`, ep, n, start));
        start += n;
      });
    }
  } catch (e) {
    if (e instanceof Error && /GRIFFIN_DECODE_MM|tuning/.test(e.message)) throw e; // a bad override: say so
    return null;
  }

  // Every dispatch must build (else the GEMVs stay, whole): checked before anything is allocated.
  type Built = {
    label: string;
    code: string;
    grid: [number, number, number];
    bind: () => Record<string, GPUBuffer>;
    bytes: number;
  };
  const built: Built[] = [];
  try {
    for (const part of parts) {
      const {spec: ms, tuning} = part;
      const P = part.mats.length;
      const grid = matmulGrid(ms, ctx.B, tuning);
      if (grid[0] > limits.maxComputeWorkgroupsPerDimension || matmulSharedBytes(ms, tuning) > shared) return null;
      const names = matmulBindings(ms, tuning);
      if (names.length > limits.maxStorageBuffersPerShaderStage) return null;
      const split = tuning.splitk > 1;
      const floats = split ? matmulPartFloats(ms, ctx.B, tuning) : 0;
      built.push({
        label: part.label,
        code: matmulSource(ms, tuning),
        grid,
        bind: () => {
          const b: Record<string, GPUBuffer> = {dims: dims(ctx), x: io.x};
          if (norm != null) b.g = io.g!;
          part.mats.forEach((m, k) => {
            b[`w${k}`] = m.w;
            if (m.s != null) b[`s${k}`] = m.s;
            if (m.z != null) b[`z${k}`] = m.z;
          });
          if (split) {
            b.part = scratch(ctx, 'part', floats);
          } else {
            b.out = io.out;
            if (part.bias != null) b.bias = part.bias();
          }
          return b;
        },
        bytes: matrixBytes(fmt, ms.N, K) * P,
      });
      if (split) {
        built.push({
          label: `${part.label}-sum`,
          code: matmulReduceSource(ms, tuning),
          grid: matmulReduceGrid(ms, ctx.B, limits.maxComputeWorkgroupsPerDimension),
          bind: () => {
            const b: Record<string, GPUBuffer> = {dims: dims(ctx), part: scratch(ctx, 'part', floats), out: io.out};
            if (part.bias != null) b.bias = part.bias();
            return b;
          },
          bytes: 0,
        });
      }
    }
  } catch (e) {
    if (e instanceof Error && /GRIFFIN_DECODE_MM|tuning/.test(e.message)) throw e;
    return null;
  }
  return built.map((d) => ({name: d.label, code: d.code, bindings: d.bind(), grid: d.grid, bytes: d.bytes}));
}

/** GeGLU's biases, gate's then up's, in one new buffer. */
function packBiases(ctx: MatmulCtx, biases: tf.Tensor[]): GPUBuffer {
  const total = biases.reduce((a, t) => a + t.size, 0);
  const buf = ctx.host.own(total);
  let off = 0;
  for (const t of biases) {
    ctx.host.encoder.copyBufferToBuffer(
      ctx.host.weight(() => t),
      0,
      buf,
      off * 4,
      t.size * 4,
    );
    off += t.size;
  }
  return buf;
}
