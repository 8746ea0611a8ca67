/**
 * The fused decode engine's tuning knobs and their defaults: GEMV threads, rows per workgroup and
 * strides per loop trip, attention ring slots per workgroup, RG-LRU input slices.
 *   import {disposeFusedDecoders} from './index';
 *   fusedTuning.threads = 64;   disposeFusedDecoders(model);   // engines made after this use 64 threads
 *
 * Each knob: fusedTuning's value if set (non-zero), else its env variable (GRIFFIN_FUSED_THREADS,
 * _ROWS, _UNROLL, _CHUNK, _LRU_SLICES, _LRU_CHANNELS, _WORDS), else the default below. Read when an engine is built.
 * The sweeps that chose the defaults: see bench/results/NOTES.md.
 *
 * Shape letters: B batch rows, E lru_width, H heads, W conv1d_width.
 */
import {RgLruSpec, rgLruSharedBytes, StepLayout} from './shaders';
import {valuesPerWord, type WeightFormat} from './shaders/weights';

/** 0 = default (or the env variable). */
export const fusedTuning = {threads: 0, maxRows: 0, unroll: 0, chunk: 0, lruSlices: 0, lruChannels: 0, words: 0};

function envInt(name: string): number {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  return v ? Number(v) : 0;
}

/** GEMV threads per workgroup (default: 128 up to 4 rows, else 64; see bench/results/NOTES.md). */
export function gemvThreads(B: number): number {
  return fusedTuning.threads || envInt('GRIFFIN_FUSED_THREADS') || (B <= 4 ? 128 : 64);
}

/** Most output rows per GEMV workgroup (default 4; the plan halves it until the tile fits). */
export function gemvMaxRows(): number {
  return fusedTuning.maxRows || envInt('GRIFFIN_FUSED_ROWS') || 4;
}

/**
 * GEMV strides per loop trip (loads in flight): 2 up to 4 rows, 4 up to 8 (see
 * bench/results/NOTES.md); above 8 rows the accumulators would crowd the registers: 1.
 */
export function gemvUnroll(B: number, compact = false): number {
  const set = fusedTuning.unroll || envInt('GRIFFIN_FUSED_UNROLL');
  if (set) return set;
  // Compact weights past 4 rows: 2 (their loads are wider; see bench/results/NOTES.md).
  return B <= 4 || compact ? (B <= 16 ? 2 : 1) : B <= 8 ? 4 : 1;
}

/**
 * Compact weights: 32-bit words per GEMV load (4, 2 or 1). A load must hold a multiple of 4
 * values and divide the input width; by default the widest such load that still leaves every
 * one of T threads a load per row, else the narrowest. Throws when no load fits the width.
 */
export function gemvWords(fmt: WeightFormat, IN: number, T: number, B = 1): number {
  if (fmt.dtype === 'float32') return 1;
  const k = valuesPerWord(fmt);
  const ok = [4, 2, 1].filter((w) => (w * k) % 4 === 0 && IN % (w * k) === 0);
  if (ok.length === 0) throw new Error(`fused decode: width ${IN} does not split into ${fmt.dtype} loads`);
  const want = fusedTuning.words || envInt('GRIFFIN_FUSED_WORDS');
  if (want && ok.includes(want)) return want;
  // Past 4 rows, at most 2 words: the rows' accumulators and x loads crowd the registers.
  const fits = B > 4 ? ok.filter((w) => w <= 2) : ok;
  return fits.find((w) => IN / (w * k) >= T) ?? fits[fits.length - 1] ?? ok[ok.length - 1];
}

/**
 * Whether an engine of B rows sums each row as a one-row engine does: the same GEMV threads and
 * load width (the only choices of the head that depend on B; its other choices only change which
 * workgroup computes a row). Strides per trip do not change a row's order (each thread adds its
 * slots in order whatever the unroll).
 */
export function tunedAsOneRow(B: number): boolean {
  return gemvThreads(B) === gemvThreads(1) && B > 4 === 1 > 4 && decodeMatmulApplies(B) === decodeMatmulApplies(1);
}

/** Ring slots per attention workgroup (default 16): short chunks spread a short context over more of the GPU. */
export function attnChunkSlots(): number {
  return fusedTuning.chunk || envInt('GRIFFIN_FUSED_CHUNK') || 16;
}

/**
 * The RG-LRU kernel's shape: 32 channels per workgroup (16 for heads of 128+ channels;
 * GRIFFIN_FUSED_LRU_CHANNELS sets it) and as many input slices (default 8, then 4, 2, 1) as fit in 256 invocations and in
 * workgroup memory.
 */
export function rgLruPlan(
  B: number,
  E: number,
  H: number,
  W: number,
  step: StepLayout,
  sharedLimit: number,
): RgLruSpec {
  const bw = E / H;
  // Wide heads: 16 channels per workgroup (more workgroups; 64 left the 2B shape at 40 per layer).
  const CC =
    fusedTuning.lruChannels ||
    envInt('GRIFFIN_FUSED_LRU_CHANNELS') ||
    (bw >= 128 ? 16 : Math.min(64, Math.max(32, Math.ceil(bw / 32) * 32)));
  const want = fusedTuning.lruSlices || envInt('GRIFFIN_FUSED_LRU_SLICES') || 8;
  for (let JS = want; JS >= 1; JS = Math.floor(JS / 2)) {
    const spec = {B, E, H, W, CC, JS, step};
    if (CC * JS <= 256 && rgLruSharedBytes(spec) <= sharedLimit) return spec;
  }
  return {B, E, H, W, CC, JS: 1, step};
}

/**
 * Tuning rows from which the step's weight products run as tiled matmuls instead of GEMVs
 * (batched_matmul.ts): decodeMatmulConfig.rows if set (non-zero; -1: never), else
 * GRIFFIN_DECODE_MATMUL_ROWS (0: never), else 16.
 */
export const decodeMatmulConfig = {rows: 0};

export function decodeMatmulRows(): number {
  if (decodeMatmulConfig.rows !== 0) return Math.max(0, decodeMatmulConfig.rows);
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_DECODE_MATMUL_ROWS : undefined;
  if (v == null || v === '') return 16;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 1024) {
    throw new Error(`GRIFFIN_DECODE_MATMUL_ROWS must be an integer in [0, 1024], got "${v}"`);
  }
  return n;
}

/** Whether an engine tuned for R rows runs its weight products as matmuls. */
export function decodeMatmulApplies(R: number): boolean {
  const t = decodeMatmulRows();
  return t > 0 && R >= t;
}
