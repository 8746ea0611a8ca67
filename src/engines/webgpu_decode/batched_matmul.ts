/// <reference types="@webgpu/types" />
/**
 * The decode step's weight products for many rows: when the engine's tuning rows reach
 * decodeMatmulRows() (tuning.ts), each projection the plan would run as GEMVs (plan.ts gemv())
 * runs as the prefill engine's tiled matmul (webgpu_prefill/shaders/matmul.ts) with M = the
 * engine's rows, with the GEMV's epilogue: store (GeLU per segment), residual, multiply, GeGLU,
 * soft cap; fused RMSNorm and bias alike. The tile is picked from the tuning rows (never the
 * engine's own rows), so that every engine made with the same tuning rows sums a row in the same
 * order (the serve guarantee: FusedDecoderOptions.tuningRows).
 *   const t = decodeMatmulTiling(32, 2560, 2560, {dtype: 'bfloat16', groupSize: 0, zeroPoints: false}, 1, 32768);
 *   console.log(t.bm, t.bn, t.tm, t.tn);   // 32 rows x 128 columns per workgroup, 8 x 4 per thread
 *
 * Tiles (bm x bn, thread tm x tn): bm = the tuning rows rounded up to 16, 32 or 64 (larger: the
 * prefill defaults), tm = bm / 4 (4 rows of threads), tn 4, bn 128 (64 past 32 rows). bn is
 * halved while the tiles overflow workgroup memory; while the product has fewer than
 * GRIFFIN_DECODE_MM_WG workgroups (default 132, one per SM of an H200; 0: never), tm is halved
 * (more threads per tile, 256 at most), then bn (to 16 columns and 16 threads at least).
 * Dispatch names end in '@mm' (profiles tell them from the GEMVs').
 * GRIFFIN_DECODE_MM (the syntax of GRIFFIN_PREFILL_MM: 'bm=32,bn=128,bk=16,tm=8,tn=4,...')
 * overrides any knob of that pick for every product.
 *
 * Shape letters: B the engine's rows (M), R its tuning rows, IN the input width (K), N a
 * segment's output columns, P 1 or 2 (GeGLU's gate and up).
 */
import type * as tf from '@tensorflow/tfjs';
import {
  MATMUL_DEFAULTS,
  type MatmulEpilogue,
  type MatmulSpec,
  type MatmulTuning,
  matmulBindings,
  matmulGrid,
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
  const v = envText('GRIFFIN_DECODE_MM_WG');
  if (v === '') return 132;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 1_000_000) {
    throw new Error(`GRIFFIN_DECODE_MM_WG must be an integer in [0, 1000000], got "${v}"`);
  }
  return n;
}

/**
 * The tile for products of R tuning rows into N columns (see the header); a full tuning, so that
 * GRIFFIN_PREFILL_MM does not reach the decode products. Throws a one-line error on a bad override.
 */
export function decodeMatmulTiling(
  R: number,
  N: number,
  K: number,
  weight: WeightFormat,
  P: 1 | 2,
  sharedLimit: number,
): MatmulTuning {
  let t: MatmulTuning;
  if (R > 64) {
    t = {...MATMUL_DEFAULTS};
  } else {
    const bm = R <= 16 ? 16 : R <= 32 ? 32 : 64;
    t = {...MATMUL_DEFAULTS, bm, tm: bm / 4, tn: 4, bn: bm <= 32 ? 128 : 64, bk: 16};
  }
  const spec: MatmulSpec = {N, K, weight, epilogue: P === 2 ? 'geglu' : 'store'};
  const want = minWorkgroups();
  const tiles = (x: MatmulTuning) => Math.ceil(N / x.bn) * Math.ceil(R / x.bm);
  const threads = (x: MatmulTuning) => (x.bm / x.tm) * (x.bn / x.tn);
  for (;;) {
    if (matmulSharedBytes(spec, t) > sharedLimit && t.bn > 16) {
      t = {...t, bn: t.bn / 2};
    } else if (tiles(t) >= want) {
      break;
    } else if (t.tm > 4 && threads({...t, tm: t.tm / 2}) <= 256) {
      t = {...t, tm: t.tm / 2}; // more threads on the same tile first
    } else if (t.bn > 16 && threads({...t, bn: t.bn / 2}) >= 16) {
      t = {...t, bn: t.bn / 2};
    } else {
      break;
    }
  }
  const env = envText('GRIFFIN_DECODE_MM');
  if (env !== '') t = {...t, ...parseMatmulTuning(env)};
  return matmulTuning(spec, t);
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

/**
 * The matmul dispatches replacing one projection's GEMVs (plan.ts gemv(): same arguments), or
 * null where they do not apply (rows below the threshold, a width not a multiple of 4, a compact
 * load that does not fit the tile): the GEMVs then stay.
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
  const norm = spec.norm ? {eps: spec.eps ?? 1e-6} : undefined;
  const base = spec.outOffset ?? 0;
  /** One product: its spec, tuning and bindings. */
  interface Part {
    label: string;
    spec: MatmulSpec;
    mats: MatmulMatrix[];
    bias?: () => GPUBuffer;
  }
  const parts: Part[] = [];
  const biasOf = (k: number) => (biases == null ? undefined : () => ctx.host.weight(() => biases[k]));
  const one = (k: number, label: string, epilogue: MatmulEpilogue, N: number, outOffset: number): Part => ({
    label,
    spec: {
      N,
      K: spec.IN,
      weight: fmt,
      norm,
      bias: biases != null,
      epilogue,
      cap: spec.cap,
      outStride: spec.outStride,
      outOffset,
    },
    mats: [mats[k]],
    bias: biasOf(k),
  });
  if (spec.mode === 'geglu') {
    const m = spec.segments[0];
    const whole: MatmulSpec = {
      N: m,
      K: spec.IN,
      weight: fmt,
      norm,
      bias: biases != null,
      epilogue: 'geglu',
      outStride: spec.outStride,
      outOffset: base,
    };
    if (matmulBindings(whole).length <= limits.maxStorageBuffersPerShaderStage) {
      parts.push({
        label: `${name}@mm`,
        spec: whole,
        mats,
        bias: biases == null ? undefined : () => packBiases(ctx, biases),
      });
    } else {
      parts.push(one(0, `${name}@mm-gate`, 'gelu', m, base), one(1, `${name}@mm-up`, 'mul', m, base));
    }
  } else {
    const epilogue: MatmulEpilogue = spec.mode;
    let start = base;
    spec.segments.forEach((n, k) => {
      const ep = epilogue === 'store' && spec.gelu?.[k] ? 'gelu' : epilogue;
      parts.push(one(k, spec.segments.length > 1 ? `${name}@mm${k}` : `${name}@mm`, ep, n, start));
      start += n;
    });
  }
  // Every part must build (else the GEMVs stay, whole): checked before anything is allocated.
  const built: {part: Part; code: string; grid: [number, number, number]}[] = [];
  for (const part of parts) {
    try {
      const P = part.spec.epilogue === 'geglu' ? 2 : 1;
      const t = decodeMatmulTiling(ctx.tuneB, part.spec.N, part.spec.K, fmt, P, limits.maxComputeWorkgroupStorageSize);
      if (matmulSharedBytes(part.spec, t) > limits.maxComputeWorkgroupStorageSize) return null;
      const grid = matmulGrid(part.spec, ctx.B, t);
      if (grid[0] > limits.maxComputeWorkgroupsPerDimension) return null;
      built.push({part, code: matmulSource(part.spec, t), grid});
    } catch (e) {
      if (e instanceof Error && /GRIFFIN_DECODE_MM|tuning/.test(e.message)) throw e; // a bad override: say so
      return null;
    }
  }
  return built.map(({part, code, grid}) => {
    const b: Record<string, GPUBuffer> = {dims: dims(ctx), x: io.x, out: io.out};
    if (io.g != null && part.spec.norm) b.g = io.g;
    part.mats.forEach((m, k) => {
      b[`w${k}`] = m.w;
      if (m.s != null) b[`s${k}`] = m.s;
      if (m.z != null) b[`z${k}`] = m.z;
    });
    if (part.bias != null) b.bias = part.bias();
    const P = part.spec.epilogue === 'geglu' ? 2 : 1;
    const bytes = matrixBytes(fmt, part.spec.N, part.spec.K) * P;
    return {name: part.label, code, bindings: b, grid, bytes};
  });
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
