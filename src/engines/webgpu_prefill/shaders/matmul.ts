/**
 * The prefill engine's tiled matmul: out = epilogue([rmsnorm](x) W^T + bias) for M token rows
 * (read from the `dims` buffer, so one pipeline serves every chunk length), W in PyTorch's
 * [out, in] layout, float32 or compact (bfloat16, float16, int8, int4; unpacked with the decode
 * engine's helpers, webgpu_decode/shaders/weights.ts), or block-diagonal float32 [blocks, K, N].
 *   const weight = {dtype: 'float32', groupSize: 0, zeroPoints: false} as const;
 *   const spec: MatmulSpec = {N: 7680, K: 2560, weight, norm: {eps: 1e-6}, bias: true, epilogue: 'geglu'};
 *   const code = matmulSource(spec);   const names = matmulBindings(spec);   const grid = matmulGrid(spec, 2048);
 *
 * A workgroup computes a BM x BN tile of out with (BM / TM) x (BN / TN) threads, each holding
 * TM x TN accumulators (register blocking). Per K-step of BK it loads the x tile [BM, BK] and the
 * weight tile [BN, BK] (vec4 loads; compact words unpacked, scaled, once per tile element, so the
 * unpacking is shared by the tile's BM rows) into workgroup memory, transposed to k-major (consecutive
 * threads take consecutive rows of a tile, so that those stores fall in distinct banks), then
 * each thread multiplies TM / 4 + TN / 4 vec4s of it per k. With `prefetch` the next K-step's
 * global loads are issued before the current step's arithmetic (held in registers); with
 * `buffers` 2 the tiles are double buffered (one barrier per K-step instead of two).
 * The fused norm: each thread sums x^2 of the x rows it loads over all of K, multiplies x by
 * (1 + g[k]) as stored; the partial sums meet in workgroup memory after the loop, and the
 * finished rows are scaled by 1 / sqrt(mean + eps).
 *
 * Bindings (matmulBindings, in order): dims (array<u32>: dims[0] = M; no other word is read),
 * x, [g], w0, [w1 (geglu's up)], [s0, [s1]: int8 row / int4 group scales], [z0, [z1]: int4 zero
 * points], [bias], out. Epilogues: store, gelu, residual (out += v), mul (out *= v), geglu, softcap.
 * WebGPU's default is 8 storage buffers per stage (tfjs opens the device with it): a GeGLU with
 * int8 / int4 weights, the norm and a bias needs 9 (with zero points 11), so it runs as two
 * dispatches, gelu (w0, bias[:N]) then mul (w1, bias[N:]) on the same out: check matmulBindings.
 * N and K must be multiples of 4, and so must xStride, xOffset (vec4 loads of x); M is any >= 0.
 *
 * Tuning (MatmulTuning; each knob: the argument's value if given, else GRIFFIN_PREFILL_MM, else
 * the default): GRIFFIN_PREFILL_MM=bm=128,bn=64,bk=16,tm=8,tn=4,prefetch=1,buffers=1,words=0,group=8,
 * spread=0,unroll=0,splitk=1,sg=0. The knobs past `group`:
 * - spread=1: a thread's TM rows / TN columns are vec4s strided by the thread grid (vec4 q at
 *   q * TY + ty, r at r * TX + tx) instead of adjacent, so that a subgroup's workgroup-memory reads
 *   of a K row are consecutive vec4s (no bank conflicts for TN = 8, 16) and its stores coalesce.
 * - unroll=1: the BK steps of a tile are written out (constant offsets) instead of a loop.
 * - splitk=S > 1 (split-K, for few rows): grid z = blocks x S, slice s takes K-steps
 *   [s nK / S, (s + 1) nK / S) and writes its raw sums to `part` [S, P, M, blocks N] (and with the
 *   norm each row's sum of squares over its K range, [S, M] after them); a second dispatch
 *   (matmulReduceSource: bindings dims, part, [bias], out) adds the S partials, scales by the norm,
 *   adds the bias and applies the epilogue. Pass 1's bindings (matmulBindings with the tuning) have
 *   `part` in place of bias and out; `part` holds matmulPartFloats floats.
 * - sg=S (the device's subgroup size; needs the 'subgroups' feature and a fixed size,
 *   subgroupMinSize == subgroupMaxSize == S, and invocations laid out in subgroups of S consecutive
 *   local indices): the x tile never enters workgroup memory: the min(S, TX) lanes that share a ty
 *   hold its TM x BK x values in registers (loaded from global, H = TM BK / (4 min(S, TX)) vec4s
 *   each) and the compute loop takes each x value from its lane by subgroupBroadcast /
 *   subgroupShuffle. Only the weight tile goes through workgroup memory. Implies unroll.
 * - coalesce=1: the tile loads of a warp (32 consecutive load slots) take 16 rows x 2 vec4s of k
 *   (32 bytes of each row: one memory sector) instead of 32 rows x 1 vec4 (half a sector each), and
 *   the k rows of the tiles in workgroup memory are padded by one vec4, so that the transposing
 *   stores of those loads fall in distinct banks. Sums run in the same order (bit-identical output).
 *   Unset, it is on for products without the fused norm where the tiles allow it (block-diagonal
 *   weights ignore it).
 * Named variants for GRIFFIN_PREFILL_MM and the sweep: MATMUL_VARIANTS (e.g. GRIFFIN_PREFILL_MM=big:
 * 128 x 128 tiles, 8 x 8 per thread, spread, double buffered).
 * The benchmark that chose the defaults: bench/prefill_matmul.ts (figures in bench/results/NOTES.md).
 *
 * Shape letters: M token rows, N output columns, K inner size, BM/BN/BK the tile, TM/TN each
 * thread's outputs, T threads per workgroup, L weight values per compact load, G int4 groups per row.
 */
import {envIntInRange} from '../../../util/env';
import {COMMON_WGSL, f32} from '../../webgpu_decode/shaders/common';
import {hasScales, slotLoad, valuesPerWord, type WeightFormat} from '../../webgpu_decode/shaders/weights';
import {flatGrid, flatIndex} from './dims';

export type MatmulEpilogue = 'store' | 'gelu' | 'residual' | 'mul' | 'geglu' | 'softcap';

export interface MatmulSpec {
  /** Output columns = the weight's rows ([out, in] layout, y = x W^T). */
  N: number;
  /** Inner size = the weight's columns. */
  K: number;
  weight: WeightFormat;
  /** Fused RMSNorm of each x row: x * rsqrt(mean(x^2) + eps) * (1 + g[k]); binding 'g' [K]. */
  norm?: {eps: number};
  /** Binding 'bias' [N] (geglu: [2N], gate's then up's; blocks: [blocks * N]). */
  bias?: boolean;
  epilogue: MatmulEpilogue;
  /** softcap: out = cap * tanh(v / cap). */
  cap?: number;
  /** x row stride / column offset in floats (default K, or blocks * K; 0). */
  xStride?: number;
  xOffset?: number;
  /** out row stride / column offset in floats (default N, or blocks * N; 0). */
  outStride?: number;
  outOffset?: number;
  /** Block-diagonal: x [M, blocks*K], w [blocks, K, N] float32 ('kn'), out [M, blocks*N]; grid z = block. */
  blocks?: number;
}

export interface MatmulTuning {
  /** Tile rows (of M) and columns (of N) per workgroup, K-step. */
  bm: number;
  bn: number;
  bk: number;
  /** Outputs per thread: rows, columns (multiples of 4). */
  tm: number;
  tn: number;
  /** Issue the next K-step's global loads before this step's arithmetic. */
  prefetch: boolean;
  /** Tiles in workgroup memory: 1, or 2 (double buffering; implies prefetch). */
  buffers: 1 | 2;
  /** Compact weights: 32-bit words per load (1, 2 or 4; 0 = the widest that fits BK). */
  words: number;
  /**
   * Workgroup order: runs of `group` M tiles sweep the N tiles together, so that a weight tile is
   * read by that many M tiles while it is in L2 (0 or 1: row by row).
   */
  group: number;
  /** A thread's rows / columns strided by the thread grid (see the header). */
  spread: boolean;
  /** The BK steps of a tile written out. */
  unroll: boolean;
  /** Split-K slices (1: none; see the header). */
  splitk: number;
  /** Subgroup size the x fragments are shared over (0: workgroup memory; see the header). */
  sg: number;
  /** Tile loads coalesced: a warp's 32 loads take 16 rows x 2 vec4s (see the header). */
  coalesce: boolean;
}

/** The defaults (see the header; 12 KB of workgroup memory, 16 KB for geglu: within WebGPU's minimum limit). */
export const MATMUL_DEFAULTS: Readonly<MatmulTuning> = {
  bm: 128,
  bn: 64,
  bk: 16,
  tm: 8,
  tn: 4,
  prefetch: true,
  buffers: 1,
  words: 0,
  group: 8,
  spread: false,
  unroll: false,
  splitk: 1,
  sg: 0,
  coalesce: false,
};

const KNOBS = Object.keys(MATMUL_DEFAULTS) as (keyof MatmulTuning)[];
const FLAGS: (keyof MatmulTuning)[] = ['prefetch', 'spread', 'unroll', 'coalesce'];

/**
 * Named tunings, usable as a word in GRIFFIN_PREFILL_MM (e.g. 'big' or 'big,sg=32') and swept by
 * bench/prefill_matmul.ts --sweep.
 */
export const MATMUL_VARIANTS: Readonly<Record<string, Partial<MatmulTuning>>> = {
  /** The defaults with strided fragments and the K-steps unrolled. */
  base: {spread: true, unroll: true},
  /** 128 x 128 tiles, 8 x 8 per thread (256 threads), K-step 8, double buffered. */
  big: {bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, buffers: 2, spread: true, unroll: true},
  /** The same with K-step 16, one buffer with prefetch. */
  big16: {bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, spread: true, unroll: true},
  /** 64 x 128, 8 x 8 per thread (128 threads), K-step 8, double buffered. */
  wide: {bm: 64, bn: 128, bk: 8, tm: 8, tn: 8, buffers: 2, spread: true, unroll: true},
  /** 128 x 64, 8 x 8 per thread (128 threads). */
  tall: {bm: 128, bn: 64, bk: 16, tm: 8, tn: 8, buffers: 2, spread: true, unroll: true},
  /** 64 x 64, 4 x 4 per thread: many workgroups for short chunks. */
  small: {bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, spread: true, unroll: true},
  /** The defaults split over K in 4 (short chunks). */
  split4: {splitk: 4, spread: true, unroll: true},
  /** The defaults split over K in 8 (short chunks). */
  split8: {splitk: 8, spread: true, unroll: true},
};

/**
 * A tuning from text like 'bm=64,bn=64,tm=4' or 'big,bk=16' (the env variable's form: knobs and
 * MATMUL_VARIANTS names, later ones overriding); throws a one-line error on a bad knob.
 */
export function parseMatmulTuning(text: string): Partial<MatmulTuning> {
  let out: Record<string, number | boolean> = {};
  for (const part of text.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    if (Object.keys(MATMUL_VARIANTS).includes(part)) {
      out = {...out, ...MATMUL_VARIANTS[part]};
      continue;
    }
    const [k, v] = part.split('=');
    if (!(KNOBS as string[]).includes(k) || v == null || !/^\d+$/.test(v.trim())) {
      throw new Error(
        `prefill matmul tuning: bad knob "${part}" (expected ${KNOBS.map((n) => `${n}=N`).join(',')} or one of ${Object.keys(MATMUL_VARIANTS).join(', ')})`,
      );
    }
    out[k] = (FLAGS as string[]).includes(k) ? v.trim() !== '0' : Number(v);
  }
  return out as Partial<MatmulTuning>;
}

function envTuning(): Partial<MatmulTuning> {
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_PREFILL_MM : undefined;
  return v ? parseMatmulTuning(v) : {};
}

/** The tuning a kernel is made with: defaults < GRIFFIN_PREFILL_MM < `tuning`; throws a one-line error if invalid. */
export function matmulTuning(spec: MatmulSpec, tuning: Partial<MatmulTuning> = {}): MatmulTuning {
  const set = {...envTuning(), ...tuning};
  const t: MatmulTuning = {...MATMUL_DEFAULTS, ...set};
  // Unset: coalesced loads for products without the fused norm, where the tiles allow them (see
  // coalesceFits; with the norm they measured slower: bench/results/NOTES.md). Same bits either way.
  if (set.coalesce == null) t.coalesce = spec.norm == null && coalesceFits(spec, t);
  if (t.buffers === 2) t.prefetch = true;
  const bad = (why: string) => new Error(`prefill matmul tuning ${JSON.stringify(t)}: ${why}`);
  const pow2 = (x: number) => Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;
  if (![t.bm, t.bn, t.bk, t.tm, t.tn].every(pow2)) throw bad('bm, bn, bk, tm, tn must be powers of two');
  if (t.tm < 4 || t.tn < 4 || t.tm > 16 || t.tn > 16) throw bad('tm and tn must be 4, 8 or 16');
  if (t.bm % t.tm !== 0 || t.bn % t.tn !== 0) throw bad('tm must divide bm and tn divide bn');
  if (t.bk < 4 || t.bk > 64) throw bad('bk must be 4..64');
  if (t.buffers !== 1 && t.buffers !== 2) throw bad('buffers must be 1 or 2');
  const T = (t.bm / t.tm) * (t.bn / t.tn);
  if (T < 16 || T > 256) throw bad(`${T} threads per workgroup (16..256)`);
  if (![0, 1, 2, 4].includes(t.words)) throw bad('words must be 0, 1, 2 or 4');
  if (!Number.isInteger(t.group) || t.group < 0 || t.group > 64) throw bad('group must be 0..64');
  const nK = Math.ceil(spec.K / t.bk);
  if (!Number.isInteger(t.splitk) || t.splitk < 1 || t.splitk > 64) throw bad('splitk must be 1..64');
  if (t.splitk > nK) throw bad(`splitk ${t.splitk} is more than the ${nK} K-steps`);
  if (t.sg !== 0) {
    if (!pow2(t.sg) || t.sg < 4 || t.sg > 128) throw bad('sg must be 0 or a subgroup size 4..128');
    const G = Math.min(t.sg, t.bn / t.tn);
    if ((t.tm * t.bk) % (4 * G) !== 0) throw bad(`sg: ${G} lanes cannot share a ${t.tm} x ${t.bk} x fragment`);
    if (T % t.sg !== 0) throw bad(`sg: ${T} threads are not whole subgroups of ${t.sg}`);
  }
  if (spec.weight.dtype !== 'float32' && spec.blocks == null) compactLoad(spec, t);
  if (t.coalesce) {
    if (t.sg !== 0) throw bad('coalesce takes no sg');
    if (!coalesceFits(spec, t))
      throw bad('coalesce: the tiles are not whole runs of 32 loads (16 rows x 2, or 32 x 1)');
  }
  return t;
}

/** Whether the kernel lays its tiles out coalesced: the knob on, [out, in] weights (block-diagonal ones ignore it), no sg. */
function coalescedTiles(spec: MatmulSpec, t: MatmulTuning): boolean {
  return t.coalesce && spec.blocks == null && t.sg === 0;
}

/** Whether the tiles' loads form whole 32-slot runs of RP rows (the coalesce knob); no sg. */
function coalesceFits(spec: MatmulSpec, t: MatmulTuning): boolean {
  if (t.sg !== 0) return false;
  const runs = (rows: number, per: number) => rows % (32 / Math.min(2, per)) === 0;
  if (!runs(t.bm, t.bk / 4)) return false;
  if (spec.blocks != null) return true;
  let L = 4;
  if (spec.weight.dtype !== 'float32') {
    try {
      L = compactLoad(spec, t).K;
    } catch {
      return false;
    }
  }
  return runs(t.bn, t.bk / L);
}

/** In a MATMUL_ORDER entry, sg: this stands for the device's subgroup size (skipped without one). */
export const DEVICE_SUBGROUP = -1;

/**
 * The tunings matmulTuningFor tries, in order of preference: the first that gives a chunk enough
 * workgroups (and that the spec and device can run) is taken, else the last. The defaults first,
 * then the defaults split over K in 2, 4, 8 for few rows (each slice a workgroup of its own). Set
 * from bench/prefill_matmul.ts sweeps at 128-2048 rows (bench/results/NOTES.md): at short chunks
 * split-K beat smaller tiles for every 2B product but the narrow k/v (small either way).
 */
export const MATMUL_ORDER: Partial<MatmulTuning>[] = [
  {},
  {splitk: 2, spread: true, unroll: true},
  {splitk: 4, spread: true, unroll: true},
  {splitk: 8, spread: true, unroll: true},
  {splitk: 16, spread: true, unroll: true},
];

/**
 * Without split-K (maxSplit 1): smaller tiles for few rows, the first giving 264 workgroups. Tiles
 * of any shape sum a value's K products in the same order, so a row's bits do not depend on the
 * rows beside it in the chunk; split-K's slices (chosen from the chunk's rows) change that order.
 */
export const MATMUL_ORDER_UNSPLIT: Partial<MatmulTuning>[] = [
  {},
  {bm: 64, bn: 64, bk: 16, tm: 4, tn: 4},
  {bm: 32, bn: 64, bk: 16, tm: 4, tn: 4},
  {bm: 32, bn: 32, bk: 16, tm: 4, tn: 4},
];

/** Holders of holdUnsplitMatmuls (split-K is off while any holds). */
const unsplitHolds = {count: 0};

/**
 * Turns split-K off for the prefill matmuls until the returned release is called (nested holds
 * count): for callers that need a row's prefill to give the same bits whatever rows share its chunk
 * (griffin serve prefills requests in groups and promises each the tokens it gets alone).
 */
export function holdUnsplitMatmuls(): () => void {
  unsplitHolds.count++;
  let held = true;
  return () => {
    if (held) unsplitHolds.count--;
    held = false;
  };
}

/**
 * The most K slices matmulTuningFor picks from MATMUL_ORDER: 1 while holdUnsplitMatmuls holds, else
 * GRIFFIN_PREFILL_MM_SPLIT (1-64) if set, else 8; a bad value is refused in one line.
 */
export function matmulMaxSplit(): number {
  if (unsplitHolds.count > 0) return 1;
  return envIntInRange('GRIFFIN_PREFILL_MM_SPLIT', 8, 1, 64);
}

/** matmulTuningFor's default minWorkgroups: about ten per SM of an H200 (where the sweeps put it). */
export const MATMUL_MIN_WORKGROUPS = 1280;

/**
 * matmulTuningFor's default unsplitWorkgroups: an unsplit tuning is taken from this many workgroups
 * (split-K adds a reduce pass and the partial sums' traffic: inside the 2B plan it lost at 2048 rows,
 * 640 tiles, and won below).
 */
export const MATMUL_UNSPLIT_WORKGROUPS = 640;

/**
 * A tuning for chunks of about M rows: the first of MATMUL_ORDER that gives at least
 * `minWorkgroups` workgroups (default MATMUL_MIN_WORKGROUPS; an entry without split-K: at least
 * min(minWorkgroups, unsplitWorkgroups), default MATMUL_UNSPLIT_WORKGROUPS), else the last that
 * runs, among those split at most `maxSplit` times (default matmulMaxSplit()); {} for the defaults.
 * maxSplit 1: MATMUL_ORDER_UNSPLIT instead, the first giving min(minWorkgroups, 264) workgroups.
 * GRIFFIN_PREFILL_MM set: {} (the env variable decides).
 * `subgroupSize`: the device's (matmulSubgroupSize), for entries with sg.
 */
export function matmulTuningFor(
  spec: MatmulSpec,
  M: number,
  opts: {minWorkgroups?: number; unsplitWorkgroups?: number; maxSplit?: number; subgroupSize?: number} = {},
): Partial<MatmulTuning> {
  if (Object.keys(envTuning()).length > 0) return {};
  const maxSplit = opts.maxSplit ?? matmulMaxSplit();
  const minWorkgroups = opts.minWorkgroups ?? (maxSplit > 1 ? MATMUL_MIN_WORKGROUPS : 264);
  const unsplit = Math.min(minWorkgroups, opts.unsplitWorkgroups ?? MATMUL_UNSPLIT_WORKGROUPS);
  const sg = opts.subgroupSize ?? 0;
  const order = maxSplit > 1 ? MATMUL_ORDER : MATMUL_ORDER_UNSPLIT;
  const runs = order
    .filter((t) => (t.sg !== DEVICE_SUBGROUP || sg > 0) && (t.splitk ?? 1) <= maxSplit)
    .map((t) => (t.sg === DEVICE_SUBGROUP ? {...t, sg} : t))
    .filter((t) => {
      try {
        matmulTuning(spec, t);
        return true;
      } catch {
        return false;
      }
    });
  if (runs.length === 0) return {};
  const count = (t: Partial<MatmulTuning>) => matmulGrid(spec, M, t).reduce((x, y) => x * y, 1);
  const enough = (t: Partial<MatmulTuning>) => count(t) >= ((t.splitk ?? 1) > 1 ? minWorkgroups : unsplit);
  return runs.find(enough) ?? runs[runs.length - 1];
}

/**
 * `tuning` (over GRIFFIN_PREFILL_MM and the defaults) made runnable for this spec on a device with
 * subgroups of `subgroupSize` (0: none): sg dropped unless it is that size, splitk at most the
 * K-steps. Other knobs are left for matmulTuning to judge.
 */
export function matmulFit(
  spec: MatmulSpec,
  tuning: Partial<MatmulTuning>,
  subgroupSize: number,
): Partial<MatmulTuning> {
  const t = {...MATMUL_DEFAULTS, ...envTuning(), ...tuning};
  const out = {...tuning};
  if (t.sg > 0 && t.sg !== subgroupSize) out.sg = 0;
  const nK = Math.ceil(spec.K / Math.max(1, t.bk));
  if (t.splitk > nK) out.splitk = Math.max(1, nK);
  return out;
}

/**
 * The subgroup size the sg knob may take on this device: the size when it has the 'subgroups'
 * feature and a fixed one (adapter subgroupMinSize == subgroupMaxSize), else 0.
 */
export function matmulSubgroupSize(device: GPUDevice): number {
  if (!device.features.has('subgroups')) return 0;
  const info = (device as unknown as {adapterInfo?: {subgroupMinSize?: number; subgroupMaxSize?: number}}).adapterInfo;
  const lo = info?.subgroupMinSize ?? 0;
  return lo > 0 && lo === info?.subgroupMaxSize ? lo : 0;
}

/** Compact weights: the load of `words` words (L values) the tile uses. */
function compactLoad(spec: MatmulSpec, t: MatmulTuning) {
  const k = valuesPerWord(spec.weight);
  const fits = (w: number) => (w * k) % 4 === 0 && w * k <= t.bk && t.bk % (w * k) === 0 && spec.K % (w * k) === 0;
  const w = t.words > 0 ? t.words : [4, 2, 1].find(fits);
  if (w == null || !fits(w)) {
    throw new Error(`prefill matmul: ${spec.weight.dtype} loads of ${t.words || 'any'} words do not fit bk=${t.bk}`);
  }
  return slotLoad(spec.weight, w);
}

/** Binding names in order (split-K: pass 1's, with `part` in place of bias and out). */
export function matmulBindings(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): string[] {
  const two = spec.epilogue === 'geglu';
  const per = (c: string) => (two ? [`${c}0`, `${c}1`] : [`${c}0`]);
  const split = matmulTuning(spec, tuning).splitk > 1;
  return [
    'dims',
    'x',
    ...(spec.norm ? ['g'] : []),
    ...per('w'),
    ...(hasScales(spec.weight) ? per('s') : []),
    ...(spec.weight.zeroPoints ? per('z') : []),
    ...(split ? ['part'] : [...(spec.bias ? ['bias'] : []), 'out']),
  ];
}

/** Whether the tuning splits K (two dispatches: matmulSource, then matmulReduceSource). */
export function matmulSplits(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): boolean {
  return matmulTuning(spec, tuning).splitk > 1;
}

/** Floats of split-K's `part` buffer for M rows: S P M (blocks N) partial sums, then S M sums of squares (norm). */
export function matmulPartFloats(spec: MatmulSpec, M: number, tuning?: Partial<MatmulTuning>): number {
  const S = matmulTuning(spec, tuning).splitk;
  if (S <= 1) return 0;
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  return S * P * M * (spec.blocks ?? 1) * spec.N + (spec.norm ? S * M : 0);
}

/** Workgroups for M rows: [N tiles, M tiles, blocks x split-K slices]. */
export function matmulGrid(spec: MatmulSpec, M: number, tuning?: Partial<MatmulTuning>): [number, number, number] {
  const t = matmulTuning(spec, tuning);
  return [Math.ceil(spec.N / t.bn), Math.max(1, Math.ceil(M / t.bm)), (spec.blocks ?? 1) * t.splitk];
}

/** Bytes of workgroup memory the kernel declares. */
export function matmulSharedBytes(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): number {
  const t = matmulTuning(spec, tuning);
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  const pad = coalescedTiles(spec, t) ? 4 : 0; // a vec4 per k row
  const xs = t.sg > 0 ? (spec.norm ? 4 * Math.ceil((t.bm * (t.bk / 4 + 1)) / 4) : 0) : t.buffers * t.bk * (t.bm + pad);
  return 4 * (xs + t.buffers * t.bk * P * (t.bn + pad));
}

/** Throws a one-line error for a spec the kernel cannot run. */
function checkSpec(spec: MatmulSpec): void {
  const {N, K, weight: fmt} = spec;
  const bad = (why: string) => new Error(`prefill matmul: ${why}`);
  const mult4 = (x: number) => Number.isInteger(x) && x > 0 && x % 4 === 0;
  if (!mult4(N) || !mult4(K)) throw bad(`N and K must be positive multiples of 4, got N=${N}, K=${K}`);
  const B = spec.blocks ?? 1;
  if (spec.blocks != null) {
    if (!Number.isInteger(B) || B < 1) throw bad(`blocks must be a positive integer, got ${B}`);
    if (fmt.dtype !== 'float32') throw bad('block-diagonal weights are float32 only');
    if (spec.norm) throw bad('block-diagonal products take no fused norm');
    if (spec.epilogue === 'geglu') throw bad('block-diagonal products have no geglu epilogue');
  }
  const xs = spec.xStride ?? B * K,
    xo = spec.xOffset ?? 0;
  if (!Number.isInteger(xs) || !Number.isInteger(xo) || xs % 4 !== 0 || xo % 4 !== 0 || xo < 0) {
    throw bad(`xStride and xOffset must be multiples of 4, got ${xs}, ${xo}`);
  }
  if (xo + B * K > xs) throw bad(`x rows of stride ${xs} cannot hold ${B * K} values from column ${xo}`);
  const os = spec.outStride ?? B * N,
    oo = spec.outOffset ?? 0;
  if (!Number.isInteger(os) || !Number.isInteger(oo) || oo < 0) throw bad(`bad outStride/outOffset ${os}, ${oo}`);
  if (oo + B * N > os) throw bad(`out rows of stride ${os} cannot hold ${B * N} values from column ${oo}`);
  if (spec.epilogue === 'softcap' && !(spec.cap != null && spec.cap > 0)) throw bad('softcap needs a cap > 0');
  if (fmt.dtype !== 'float32' && K % valuesPerWord(fmt) !== 0) throw bad(`${fmt.dtype} rows of ${K} values`);
  if (fmt.dtype === 'int4' && K % fmt.groupSize !== 0) throw bad(`group size ${fmt.groupSize} does not divide K=${K}`);
  if (spec.norm && !(spec.norm.eps >= 0)) throw bad(`norm eps must be >= 0, got ${spec.norm.eps}`);
}

export function matmulSource(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): string {
  checkSpec(spec);
  const tu = matmulTuning(spec, tuning);
  const {N, K, weight: fmt} = spec;
  const {bm: BM, bn: BN, bk: BK, tm: TM, tn: TN} = tu;
  const NB = spec.blocks ?? 1;
  const kn = spec.blocks != null;
  const compact = fmt.dtype !== 'float32';
  const load = compact && !kn ? compactLoad(spec, tu) : null;
  const L = load?.K ?? 4; // weight values per load along k (kn layout: along n)
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  const TX = BN / TN,
    TY = BM / TM;
  const T = TX * TY;
  const XV = BK / 4; // vec4s of x per tile row
  const xStride = spec.xStride ?? NB * K,
    xOffset = spec.xOffset ?? 0;
  const nK = Math.ceil(K / BK);
  const guardN = N % BN !== 0;
  const guardK = K % BK !== 0;
  const bufs = tu.buffers;
  const prefetch = tu.prefetch || bufs === 2;
  const S = tu.splitk;
  const SG = tu.sg;
  const G = SG > 0 ? Math.min(SG, TX) : 0; // lanes sharing a ty's x fragment
  const H = SG > 0 ? (TM * BK) / (4 * G) : 0; // x vec4s each of them holds
  const unroll = tu.unroll || SG > 0;
  const CO = coalescedTiles(spec, tu);
  const XSV = BM / 4 + (CO ? 1 : 0),
    WSV = BN / 4 + (CO ? 1 : 0); // vec4s per k row of a tile in workgroup memory (padded: coalesce)
  const XT = BK * XSV,
    WT = BK * WSV; // vec4s per tile
  /**
   * WGSL: the tile row (r) and load along k (k, in loads) of load slot `idx` for tiles of `rows`
   * rows of `per` loads each: slot-major over rows, or with coalesce 32-slot runs of RP rows x KP loads.
   */
  const slotOf = (idx: string, rows: number, per: number, r: string, k: string) => {
    if (!CO) return `let ${r} = ${idx} % ${rows}u; let ${k} = ${idx} / ${rows}u;`;
    const KP = Math.min(2, per),
      RP = 32 / KP,
      NB = rows / RP;
    return `let ln_ = ${idx} % 32u; let ch_ = ${idx} / 32u; let ${r} = (ch_ % ${NB}u) * ${RP}u + ln_ % ${RP}u; let ${k} = (ch_ / ${NB}u) * ${KP}u + ln_ / ${RP}u;`;
  };
  const G4 = fmt.dtype === 'int4' ? K / fmt.groupSize : 0;
  // A thread's x row-quad q / weight column-quad r: vec4 index within a tile row.
  const rowVec = (q: number) => (tu.spread ? `${q * TY}u + ty` : `ty * ${TM / 4}u + ${q}u`);
  const colVec = (r: number) => (tu.spread ? `${r * TX}u + tx` : `tx * ${TN / 4}u + ${r}u`);
  /** Tile row of the thread's local row i (a WGSL u32 expression, or a number). */
  const rowOf = (i: number) => `(${rowVec(i >> 2)}) * 4u + ${i & 3}u`;
  const rowOfDyn = (r: string) => (tu.spread ? `((${r} / 4u) * ${TY}u + ty) * 4u + ${r} % 4u` : `ty * ${TM}u + ${r}`);

  const names = matmulBindings(spec, tu);
  const decl = names
    .map((name, i) => {
      let ty = 'array<vec4<f32>>';
      if (name === 'dims') ty = 'array<u32>';
      else if (name.startsWith('w') && load != null) ty = `array<${load.type}>`;
      else if (name.startsWith('s') || name.startsWith('z')) ty = 'array<f32>';
      else if (name === 'out' && !outVecOf(spec)) ty = 'array<f32>';
      const access = name === 'out' || name === 'part' ? 'read_write' : 'read';
      return `@group(0) @binding(${i}) var<storage, ${access}> ${name} : ${ty};`;
    })
    .join('\n');

  // ---- global loads into registers (px*, pw*), then stores into workgroup memory ----
  const LX = BM * XV; // x loads per tile
  const nLX = SG > 0 ? H : Math.ceil(LX / T);
  const LWrow = kn ? BN / 4 : BK / L; // loads per weight-tile row (kn: per k row)
  const LW = kn ? BK * LWrow : BN * LWrow;
  const nLW = Math.ceil(LW / T);
  const guardIdx = (n: number, total: number, l: number) =>
    SG === 0 && l === n - 1 && total % T !== 0 ? `idx < ${total}u` : '';
  const guardIdxW = (n: number, total: number, l: number) => (l === n - 1 && total % T !== 0 ? `idx < ${total}u` : '');
  const conds = (...c: string[]) => c.filter((s) => s !== '').join(' && ') || 'true';

  // x loads: workgroup memory path (tile row r, k), or subgroup path (held vec4 v = l G + lane % G).
  const xPos = (l: number, k0: string) =>
    SG > 0
      ? `let v = ${l * G}u + gl; let r = ${rowOfDyn(`(v / ${XV}u)`)}; let k = ${k0} + (v % ${XV}u) * 4u;`
      : `let idx = t + ${l * T}u; ${slotOf('idx', BM, XV, 'r', 'kv')} let k = ${k0} + kv * 4u;`;
  const loadX = (k0: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLX; l++) {
      L2.push(`{ ${xPos(l, k0)} let m = m0 + r;`);
      const c = conds(guardIdx(nLX, LX, l), 'm < M', guardK ? `k < ${K}u` : '');
      L2.push(`  px${l} = vec4<f32>(0.0);`);
      L2.push(`  if (${c}) { px${l} = x[(m * ${xStride}u + xcol + k) / 4u]; } }`);
    }
    return L2;
  };
  const storeX = (k0: string, buf: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLX; l++) {
      const inner: string[] = [];
      if (SG > 0) inner.push(`let v = ${l * G}u + gl; let kl = (v % ${XV}u) * 4u;`);
      else inner.push(`let idx = t + ${l * T}u; ${slotOf('idx', BM, XV, 'r', 'kv')} let kl = kv * 4u;`);
      let v = `px${l}`;
      if (spec.norm) {
        inner.push(`sq${l} = sq${l} + dot(px${l}, px${l});`);
        const gk = guardK
          ? `select(vec4<f32>(0.0), g[min(${k0} + kl, ${K - 4}u) / 4u], ${k0} + kl < ${K}u)`
          : `g[(${k0} + kl) / 4u]`;
        inner.push(`let xv = px${l} * (vec4<f32>(1.0) + ${gk});`);
        v = 'xv';
      }
      if (SG > 0) inner.push(`cx${l} = ${v};`);
      else {
        for (let c = 0; c < 4; c++) inner.push(`xs[${buf} + (kl + ${c}u) * ${XSV}u + r / 4u][r % 4u] = ${v}[${c}];`);
      }
      const g = guardIdx(nLX, LX, l);
      L2.push(g ? `{ let idx0 = t + ${l * T}u; if (idx0 < ${LX}u) { ${inner.join(' ')} } }` : `{ ${inner.join(' ')} }`);
    }
    return L2;
  };

  const loadW = (k0: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLW; l++) {
      for (let p = 0; p < P; p++) {
        const pw = `pw${p}_${l}`;
        if (kn) {
          // [blocks, K, N]: row k of the tile, 4 columns.
          L2.push(
            `{ let idx = t + ${l * T}u; let kr = idx / ${LWrow}u; let n = n0 + (idx % ${LWrow}u) * 4u; let k = ${k0} + kr;`,
          );
          const c = conds(guardIdxW(nLW, LW, l), guardN ? `n < ${N}u` : '', guardK ? `k < ${K}u` : '');
          L2.push(`  ${pw} = vec4<f32>(0.0);`);
          L2.push(`  if (${c}) { ${pw} = w${p}[(blk * ${K * N}u + k * ${N}u + n) / 4u]; } }`);
        } else {
          L2.push(
            `{ let idx = t + ${l * T}u; ${slotOf('idx', BN, LWrow, 'nl', 'kq')} let n = n0 + nl; let k = ${k0} + kq * ${L}u;`,
          );
          const c = conds(guardIdxW(nLW, LW, l), guardN ? `n < ${N}u` : '', guardK ? `k < ${K}u` : '');
          if (load == null) {
            L2.push(`  ${pw} = vec4<f32>(0.0);`);
            L2.push(`  if (${c}) { ${pw} = w${p}[(n * ${K}u + k) / 4u]; } }`);
          } else {
            L2.push(`  ${pw} = ${load.type}();`);
            if (fmt.dtype === 'int8') L2.push(`  sc${p}_${l} = 0.0;`);
            if (fmt.dtype === 'int4') L2.push(`  sc${p}_${l} = 0.0; zp${p}_${l} = 8.0;`);
            const extra: string[] = [];
            if (fmt.dtype === 'int8') extra.push(`sc${p}_${l} = s${p}[n];`);
            if (fmt.dtype === 'int4') {
              extra.push(`let gi = n * ${G4}u + k / ${fmt.groupSize}u; sc${p}_${l} = s${p}[gi];`);
              if (fmt.zeroPoints) extra.push(`zp${p}_${l} = z${p}[gi];`);
            }
            L2.push(`  if (${c}) { ${pw} = w${p}[(n * ${K}u + k) / ${L}u]; ${extra.join(' ')} } }`);
          }
        }
      }
    }
    return L2;
  };
  const storeW = (buf: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLW; l++) {
      const inner: string[] = [`let idx = t + ${l * T}u;`];
      for (let p = 0; p < P; p++) {
        const pw = `pw${p}_${l}`;
        if (kn) {
          inner.push(`ws${p}[${buf} + idx] = ${pw};`);
        } else if (load == null) {
          inner.push(`{ ${slotOf('idx', BN, LWrow, 'nl', 'kq')} let kl = kq * 4u;`);
          for (let c = 0; c < 4; c++)
            inner.push(`ws${p}[${buf} + (kl + ${c}u) * ${WSV}u + nl / 4u][nl % 4u] = ${pw}[${c}];`);
          inner.push('}');
        } else {
          inner.push(`{ ${slotOf('idx', BN, LWrow, 'nl', 'kq')} let kl = kq * ${L}u;`);
          const vecs = load.unpack(pw, `zp${p}_${l}`);
          const scale = fmt.dtype === 'int8' || fmt.dtype === 'int4' ? ` * sc${p}_${l}` : '';
          vecs.forEach((e, j) => {
            inner.push(`let u${j} = (${e})${scale};`);
            for (let c = 0; c < 4; c++) {
              inner.push(`ws${p}[${buf} + (kl + ${j * 4 + c}u) * ${WSV}u + nl / 4u][nl % 4u] = u${j}[${c}];`);
            }
          });
          inner.push('}');
        }
      }
      const g = guardIdxW(nLW, LW, l);
      L2.push(g ? `{ let idx0 = t + ${l * T}u; if (idx0 < ${LW}u) { ${inner.join(' ')} } }` : `{ ${inner.join(' ')} }`);
    }
    return L2;
  };

  // ---- the arithmetic of one K-step from workgroup memory (x: or from the subgroup's registers) ----
  const step = (kk: string, kc: number | null, xb: string, wb: string) => {
    const L2: string[] = [];
    const aOf: string[] = [];
    if (SG > 0) {
      // kc is a constant here (the steps are unrolled): x[row i][kc] sits in held vec4 v = i XV + kc / 4.
      for (let i = 0; i < TM; i++) {
        const v = i * XV + (kc! >> 2);
        const h = Math.floor(v / G),
          j = v % G;
        const e = `cx${h}[${kc! & 3}]`;
        L2.push(`  let a${i} = ${G === SG ? `subgroupBroadcast(${e}, ${j}u)` : `subgroupShuffle(${e}, gb + ${j}u)`};`);
        aOf.push(`a${i}`);
      }
    } else {
      for (let q = 0; q < TM / 4; q++) L2.push(`  let a${q} = xs[${xb} + ${kk} * ${XSV}u + ${rowVec(q)}];`);
      for (let i = 0; i < TM; i++) aOf.push(`a${i >> 2}[${i & 3}]`);
    }
    for (let p = 0; p < P; p++) {
      for (let r = 0; r < TN / 4; r++) L2.push(`  let b${p}_${r} = ws${p}[${wb} + ${kk} * ${WSV}u + ${colVec(r)}];`);
    }
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < TM; i++) {
        for (let r = 0; r < TN / 4; r++) {
          const acc = `acc${p}_${i}_${r}`;
          L2.push(`  ${acc} = fma(vec4<f32>(${aOf[i]}), b${p}_${r}, ${acc});`);
        }
      }
    }
    return L2;
  };
  const compute = (xb: string, wb: string) => {
    if (!unroll) return [`for (var kk = 0u; kk < ${BK}u; kk = kk + 1u) {`, ...step('kk', null, xb, wb), '}'];
    const L2: string[] = [];
    for (let kk = 0; kk < BK; kk++) L2.push('{', ...step(`${kk}u`, kk, xb, wb), '}');
    return L2;
  };

  // ---- the K loop: K-steps [kb, ke) (all of them unless split) ----
  const body: string[] = [];
  const xBuf = (b: string) => (bufs === 2 && SG === 0 ? `${b} * ${XT}u` : '0u');
  const wBuf = (b: string) => (bufs === 2 ? `${b} * ${WT}u` : '0u');
  const kb = S > 1 ? 'kb' : '0u',
    ke = S > 1 ? 'ke' : `${nK}u`;
  if (S > 1) body.push(`let kb = (slice * ${nK}u) / ${S}u;`, `let ke = ((slice + 1u) * ${nK}u) / ${S}u;`);
  if (!prefetch) {
    body.push(`for (var kt = ${kb}; kt < ${ke}; kt = kt + 1u) {`, `  let k0 = kt * ${BK}u;`);
    body.push(...loadX('k0'), ...loadW('k0'), ...storeX('k0', '0u'), ...storeW('0u'));
    body.push('  workgroupBarrier();', ...compute('0u', '0u'), '  workgroupBarrier();', '}');
  } else if (bufs === 1) {
    body.push(`let kfirst = ${kb} * ${BK}u;`, ...loadX('kfirst'), ...loadW('kfirst'));
    body.push(`for (var kt = ${kb}; kt < ${ke}; kt = kt + 1u) {`, `  let k0 = kt * ${BK}u;`);
    body.push(...storeX('k0', '0u'), ...storeW('0u'), '  workgroupBarrier();');
    body.push(`  if (kt + 1u < ${ke}) {`, `  let k1 = k0 + ${BK}u;`, ...loadX('k1'), ...loadW('k1'), '  }');
    body.push(...compute('0u', '0u'), '  workgroupBarrier();', '}');
  } else {
    body.push(`let kfirst = ${kb} * ${BK}u;`, ...loadX('kfirst'), ...loadW('kfirst'));
    body.push(...storeX('kfirst', '0u'), ...storeW('0u'), 'workgroupBarrier();');
    body.push(`for (var kt = ${kb}; kt < ${ke}; kt = kt + 1u) {`, `  let cur = (kt - ${kb}) & 1u; let nxt = 1u - cur;`);
    body.push(`  let more = kt + 1u < ${ke}; let k1 = (kt + 1u) * ${BK}u;`);
    body.push('  if (more) {', ...loadX('k1'), ...loadW('k1'), '  }');
    body.push(...compute(xBuf('cur'), wBuf('cur')));
    if (SG > 0) {
      // The next x fragment goes to registers that this step has finished reading: barrier-free.
      body.push('  if (more) {', ...storeX('k1', '0u'), ...storeW(wBuf('nxt')), '  }');
    } else {
      body.push('  if (more) {', ...storeX('k1', xBuf('nxt')), ...storeW(wBuf('nxt')), '  }');
    }
    body.push('  workgroupBarrier();', '}');
  }

  // ---- norm: the rows' sums of squares meet in xs (free after the loop) ----
  // Each (row, vec4 of k) partial is stored at float (k / 4) BM + row; then row r's sum; then
  // 1 / sqrt(mean + eps) (split-K: the slice's sum, into part) at float LX + r.
  const norm: string[] = [];
  if (spec.norm) {
    norm.push('workgroupBarrier();');
    for (let l = 0; l < nLX; l++) {
      if (SG > 0) {
        // Only the first group of lanes of each ty writes (the others hold the same values).
        const st = `{ let v = ${l * G}u + gl; let i = (v % ${XV}u) * ${BM}u + ${rowOfDyn(`(v / ${XV}u)`)}; xs[i / 4u][i % 4u] = sq${l}; }`;
        norm.push(G < TX ? `if (tx < ${G}u) ${st}` : st);
      } else {
        const idx = `t + ${l * T}u`;
        // At float kv BM + r, where the sums below read row r's partials.
        const st = CO
          ? `{ let idx = ${idx}; ${slotOf('idx', BM, XV, 'r', 'kv')} let i = kv * ${BM}u + r; xs[i / 4u][i % 4u] = sq${l}; }`
          : `xs[(${idx}) / 4u][(${idx}) % 4u] = sq${l};`;
        norm.push(guardIdx(nLX, LX, l) ? `if (${idx} < ${LX}u) { ${st} }` : st);
      }
    }
    norm.push('workgroupBarrier();');
    norm.push(`for (var r = t; r < ${BM}u; r = r + ${T}u) {`);
    norm.push(
      `  var s = 0.0; for (var c = 0u; c < ${XV}u; c = c + 1u) { let i = c * ${BM}u + r; s = s + xs[i / 4u][i % 4u]; }`,
    );
    if (S > 1) {
      norm.push(
        `  if (n0 == 0u && m0 + r < M) { let j = ${S * P * NB * N}u * M + slice * M + m0 + r; part[j / 4u][j % 4u] = s; }`,
      );
    } else {
      norm.push(`  let j = ${LX}u + r; xs[j / 4u][j % 4u] = 1.0 / sqrt(s / ${f32(K)} + ${f32(spec.norm.eps)});`);
    }
    norm.push('}', 'workgroupBarrier();');
  }

  // ---- epilogue (split-K: the raw sums into part) ----
  const epi: string[] = [];
  for (let i = 0; i < TM; i++) {
    epi.push(`{ let m = m0 + ${rowOf(i)};`);
    epi.push(`  if (m < M) {`);
    if (spec.norm && S === 1) epi.push(`  let j = ${LX}u + ${rowOf(i)}; let rs = xs[j / 4u][j % 4u];`);
    for (let r = 0; r < TN / 4; r++) {
      epi.push(`  { let n = n0 + (${colVec(r)}) * 4u;`);
      if (guardN) epi.push(`  if (n < ${N}u) {`);
      if (S > 1) {
        for (let p = 0; p < P; p++) {
          epi.push(
            `  part[(((slice * ${P}u + ${p}u) * M + m) * ${NB * N}u + blk * ${N}u + n) / 4u] = acc${p}_${i}_${r};`,
          );
        }
      } else {
        const scaled = (p: number) => (spec.norm ? `acc${p}_${i}_${r} * rs` : `acc${p}_${i}_${r}`);
        epi.push(...epilogueLines(spec, scaled(0), P === 2 ? scaled(1) : null, 'm', 'n', 'blk'));
      }
      if (guardN) epi.push('  }');
      epi.push('  }');
    }
    epi.push('  } }');
  }

  const NTN = Math.ceil(N / BN);
  const GM = tu.group;
  const tileOrder =
    GM <= 1
      ? `  let m0 = wid.y * ${BM}u;\n  let n0 = wid.x * ${BN}u;`
      : `  let id = wid.x + wid.y * ${NTN}u;
  let mTiles = (M + ${BM - 1}u) / ${BM}u;
  let first = (id / ${GM * NTN}u) * ${GM}u;
  if (first >= mTiles) { return; }
  let run = min(mTiles - first, ${GM}u);
  let m0 = (first + (id % ${GM * NTN}u) % run) * ${BM}u;
  let nt = (id % ${GM * NTN}u) / run;
  if (nt >= ${NTN}u) { return; }
  let n0 = nt * ${BN}u;`;
  const regs: string[] = [];
  for (let l = 0; l < nLX; l++) regs.push(`var px${l} : vec4<f32>;`);
  if (SG > 0) for (let l = 0; l < nLX; l++) regs.push(`var cx${l} = vec4<f32>(0.0);`);
  if (spec.norm) for (let l = 0; l < nLX; l++) regs.push(`var sq${l} = 0.0;`);
  for (let l = 0; l < nLW; l++) {
    for (let p = 0; p < P; p++) {
      regs.push(`var pw${p}_${l} : ${load?.type ?? 'vec4<f32>'};`);
      if (fmt.dtype === 'int8' || fmt.dtype === 'int4') regs.push(`var sc${p}_${l} = 0.0;`);
      if (fmt.dtype === 'int4') regs.push(`var zp${p}_${l} = 8.0;`);
    }
  }
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < TM; i++) for (let r = 0; r < TN / 4; r++) regs.push(`var acc${p}_${i}_${r} = vec4<f32>(0.0);`);
  }
  const wsDecl = Array.from({length: P}, (_, p) => `var<workgroup> ws${p} : array<vec4<f32>, ${bufs * WT}>;`).join(
    '\n',
  );
  const xsVec4 = SG > 0 ? (spec.norm ? Math.ceil((BM * (XV + 1)) / 4) : 0) : bufs * XT;
  const xsDecl = xsVec4 > 0 ? `var<workgroup> xs : array<vec4<f32>, ${xsVec4}>;` : '';
  const lanes = SG > 0 ? `  let gl = lane % ${G}u;${G < SG ? ` let gb = lane - gl;` : ''}` : '';

  return `${SG > 0 ? 'enable subgroups;\n' : ''}
${COMMON_WGSL}
${decl}
${xsDecl}
${wsDecl}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32${SG > 0 ? ', @builtin(subgroup_invocation_id) lane : u32' : ''}) {
  let M = dims[0];
${tileOrder}
  if (m0 >= M) { return; }
  let blk = wid.z / ${S}u;
  let slice = wid.z % ${S}u;
  let xcol = ${xOffset}u + blk * ${K}u;
  let tx = t % ${TX}u;
  let ty = t / ${TX}u;
${lanes}
  ${regs.join('\n  ')}
${body.join('\n')}
${norm.join('\n')}
${epi.join('\n')}
}`;
}

/** Whether out is written as vec4s. */
function outVecOf(spec: MatmulSpec): boolean {
  const NB = spec.blocks ?? 1;
  const outStride = spec.outStride ?? NB * spec.N,
    outOffset = spec.outOffset ?? 0;
  return outStride % 4 === 0 && outOffset % 4 === 0;
}

/**
 * WGSL lines that finish 4 outputs of row m, columns n..n+3 (of block blk): v0 (and geglu's up v1)
 * are the vec4 sums (norm applied); bias, epilogue, store into out.
 */
function epilogueLines(spec: MatmulSpec, v0: string, v1: string | null, m: string, n: string, blk: string): string[] {
  const {N} = spec;
  const NB = spec.blocks ?? 1;
  const kn = spec.blocks != null;
  const ep = spec.epilogue;
  const outStride = spec.outStride ?? NB * N,
    outOffset = spec.outOffset ?? 0;
  const epi: string[] = [];
  const bofs = kn ? `${blk} * ${N}u + ` : '';
  epi.push(`  var v = ${v0};`);
  if (spec.bias) epi.push(`  v = v + bias[(${bofs}${n}) / 4u];`);
  if (ep === 'geglu') {
    epi.push(`  var up = ${v1};`);
    if (spec.bias) epi.push(`  up = up + bias[(${N}u + ${n}) / 4u];`);
    epi.push('  v = vec4<f32>(geluT(v.x), geluT(v.y), geluT(v.z), geluT(v.w)) * up;');
  } else if (ep === 'gelu') {
    epi.push('  v = vec4<f32>(geluT(v.x), geluT(v.y), geluT(v.z), geluT(v.w));');
  } else if (ep === 'softcap') {
    const cap = f32(spec.cap!);
    epi.push(
      `  v = vec4<f32>(tanhP(v.x / ${cap}), tanhP(v.y / ${cap}), tanhP(v.z / ${cap}), tanhP(v.w / ${cap})) * ${cap};`,
    );
  }
  const col = `${m} * ${outStride}u + ${outOffset}u + ${kn ? `${blk} * ${N}u + ` : ''}${n}`;
  if (outVecOf(spec)) {
    const o = `out[(${col}) / 4u]`;
    epi.push(ep === 'residual' ? `  ${o} = ${o} + v;` : ep === 'mul' ? `  ${o} = ${o} * v;` : `  ${o} = v;`);
  } else {
    epi.push(`  let o = ${col};`);
    for (let c = 0; c < 4; c++) {
      const o = `out[o + ${c}u]`;
      const e = `v[${c}]`;
      epi.push(ep === 'residual' ? `  ${o} = ${o} + ${e};` : ep === 'mul' ? `  ${o} = ${o} * ${e};` : `  ${o} = ${e};`);
    }
  }
  return epi;
}

/** Split-K's second pass, binding names in order. */
export function matmulReduceBindings(spec: MatmulSpec): string[] {
  return ['dims', 'part', ...(spec.bias ? ['bias'] : []), 'out'];
}

const REDUCE_WG = 256;

/** Split-K's second pass: workgroups for M rows (one invocation per 4 outputs; 2-D past 65,535). */
export function matmulReduceGrid(spec: MatmulSpec, M: number, maxX = 65535): [number, number, number] {
  return flatGrid((M * (spec.blocks ?? 1) * spec.N) / 4, REDUCE_WG, maxX);
}

/**
 * Split-K's second pass: out = epilogue((sum of the S partials) * rs + bias) from `part`
 * (matmulSource with the same spec and tuning wrote it); one invocation per 4 outputs.
 */
export function matmulReduceSource(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): string {
  checkSpec(spec);
  const S = matmulTuning(spec, tuning).splitk;
  const {N, K} = spec;
  const NBN = (spec.blocks ?? 1) * N;
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  const names = matmulReduceBindings(spec);
  const decl = names
    .map((name, i) => {
      let ty = 'array<vec4<f32>>';
      if (name === 'dims') ty = 'array<u32>';
      else if (name === 'out' && !outVecOf(spec)) ty = 'array<f32>';
      const access = name === 'out' ? 'read_write' : 'read';
      return `@group(0) @binding(${i}) var<storage, ${access}> ${name} : ${ty};`;
    })
    .join('\n');
  const sums: string[] = [];
  for (let p = 0; p < P; p++) {
    sums.push(`var a${p} = vec4<f32>(0.0);`);
    sums.push(
      `for (var s = 0u; s < ${S}u; s = s + 1u) { a${p} = a${p} + part[((s * ${P}u + ${p}u) * M + m) * ${NBN / 4}u + c4]; }`,
    );
  }
  let rs = '';
  if (spec.norm) {
    sums.push('var q = 0.0;');
    sums.push(
      `for (var s = 0u; s < ${S}u; s = s + 1u) { let j = ${S * P * NBN}u * M + s * M + m; q = q + part[j / 4u][j % 4u]; }`,
    );
    sums.push(`let rs = 1.0 / sqrt(q / ${f32(K)} + ${f32(spec.norm.eps)});`);
    rs = ' * rs';
  }
  return `
${COMMON_WGSL}
${decl}

@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let M = dims[0];
  let i = ${flatIndex('wid', 'nwg', 'lid', REDUCE_WG)};
  if (i >= M * ${NBN / 4}u) { return; }
  let m = i / ${NBN / 4}u;
  let c4 = i % ${NBN / 4}u;
  let blk = (c4 * 4u) / ${N}u;
  let n = c4 * 4u - blk * ${N}u;
  ${sums.join('\n  ')}
${epilogueLines(spec, `a0${rs}`, P === 2 ? `a1${rs}` : null, 'm', 'n', 'blk').join('\n')}
}`;
}
