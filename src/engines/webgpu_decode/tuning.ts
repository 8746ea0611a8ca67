/**
 * The fused decode engine's tuning knobs and their defaults: GEMV threads, rows per workgroup and
 * strides per loop trip, attention ring slots per workgroup, the RG-LRU kernel's slices, rows and unroll.
 *   import {disposeFusedDecoders} from './index';
 *   fusedTuning.threads = 64;   disposeFusedDecoders(model);   // engines made after this use 64 threads
 *
 * Each knob: fusedTuning's value if set (non-zero), else its env variable (GRIFFIN_FUSED_THREADS,
 * _ROWS, _UNROLL, _CHUNK, _LRU_SLICES, _LRU_CHANNELS, _LRU_ROWS, _LRU_UNROLL, _WORDS, _ARGMAX_SLICES; _ARGMAX on/off;
 * _REDUCE tree/split, _XLOAD ahead/lazy, _UNPACK convert/magic, _COMBINE serial/split, _ROPE
 * separate/fused), else the default below. Read when an engine is built (GRIFFIN_FUSED_ARGMAX: when a generation starts).
 * The sweeps that chose the defaults: see bench/results/NOTES.md.
 *
 * Shape letters: B batch rows, E lru_width, H heads, W conv1d_width.
 */
import {envIntInRange} from '../../util/env';
import {argmaxGroups, RgLruSpec, rgLruSharedBytes, StepLayout} from './shaders';
import {valuesPerWord, type WeightFormat} from './shaders/weights';

/** 0 = default (or the env variable). */
export const fusedTuning = {
  threads: 0,
  maxRows: 0,
  unroll: 0,
  chunk: 0,
  lruSlices: 0,
  lruChannels: 0,
  /** RG-LRU rows per workgroup (GRIFFIN_FUSED_LRU_ROWS). */
  lruRows: 0,
  /** RG-LRU gate-loop trips unrolled (GRIFFIN_FUSED_LRU_UNROLL). */
  lruUnroll: 0,
  words: 0,
  argmaxSlices: 0,
  /** GEMV reduction: 1 tree, 2 split (GRIFFIN_FUSED_REDUCE=tree|split). */
  reduce: 0,
  /** GEMV x loads: 1 with the weights, 2 lazy (GRIFFIN_FUSED_XLOAD=ahead|lazy). */
  xload: 0,
  /** int8 / int4 unpacking: 1 int-to-float conversion, 2 the 2^23 trick (GRIFFIN_FUSED_UNPACK=convert|magic). */
  unpack: 0,
  /** 1: greedy picks inside the step's plan; -1: a pick of its own before each step (ops/row_argmax). */
  argmax: 0,
  /** Attention combine: 1 serial, 2 split (GRIFFIN_FUSED_COMBINE=serial|split). */
  combine: 0,
  /** RoPE: 1 a dispatch of its own, 2 folded into the partial attention kernel (GRIFFIN_FUSED_ROPE=separate|fused). */
  rope: 0,
};

/** A knob's whole value clamped to [1, hi]; 0 (unset) for what is not a positive number. */
function bounded(v: number, hi: number): number {
  return Number.isFinite(v) && v >= 1 ? Math.min(hi, Math.floor(v)) : 0;
}

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

function envChoice(name: string, choices: string[]): number {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  const i = v == null ? -1 : choices.indexOf(v.toLowerCase());
  return i + 1; // 0: unset or unknown
}

/** How a GEMV adds up its threads' partial sums (default 'split': two barriers, see shaders/gemv.ts). */
export function gemvReduce(): 'tree' | 'split' {
  const k = fusedTuning.reduce || envChoice('GRIFFIN_FUSED_REDUCE', ['tree', 'split']) || 2;
  return k === 1 ? 'tree' : 'split';
}

/**
 * Whether a GEMV loads x lazily, one batch row at a time (shaders/gemv.ts lazyX). Ahead, a loop
 * trip holds the x of B rows x U strides; lazily, the unpacked weights of its RP = R x P rows:
 * by default lazy when the first is more than twice the second.
 */
export function gemvLazyX(B: number, U: number, RP: number): boolean {
  const k = fusedTuning.xload || envChoice('GRIFFIN_FUSED_XLOAD', ['ahead', 'lazy']);
  return k ? k === 2 : B * U > 2 * RP;
}

/** Whether int8 / int4 weights unpack by the 2^23 trick (default) rather than int-to-float conversions. */
export function gemvMagicUnpack(): boolean {
  const k = fusedTuning.unpack || envChoice('GRIFFIN_FUSED_UNPACK', ['convert', 'magic']) || 2;
  return k === 2;
}

/** Whether the attention combine shares the chunks out among its invocations (default; shaders/attention_combine.ts). */
export function splitCombine(): boolean {
  return (fusedTuning.combine || envChoice('GRIFFIN_FUSED_COMBINE', ['serial', 'split']) || 2) === 2;
}

/** Whether RoPE and the ring store run inside the partial attention kernel (default, where it fits). */
export function fusedRope(): boolean {
  return (fusedTuning.rope || envChoice('GRIFFIN_FUSED_ROPE', ['separate', 'fused']) || 2) === 2;
}

/** Ring slots per attention workgroup (default 16): short chunks spread a short context over more of the GPU. */
export function attnChunkSlots(): number {
  return fusedTuning.chunk || envInt('GRIFFIN_FUSED_CHUNK') || 16;
}

/**
 * The RG-LRU kernel's shape for B rows (the engine's tuning rows, so that a row's sums run in one
 * order whatever the live batch): 32 channels per workgroup (16 for heads of 128+ channels;
 * GRIFFIN_FUSED_LRU_CHANNELS), rows per workgroup (GRIFFIN_FUSED_LRU_ROWS; default up to 8, fewer
 * while that leaves under 256 workgroups), input slices (GRIFFIN_FUSED_LRU_SLICES; default 16,
 * then 8, 4, 2, 1 until it fits in 256 invocations and in workgroup memory) and gate-loop trips
 * unrolled (GRIFFIN_FUSED_LRU_UNROLL; default 4).
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
  const chunks = Math.ceil(bw / CC);
  const setRows = bounded(fusedTuning.lruRows || envInt('GRIFFIN_FUSED_LRU_ROWS'), 1024);
  let RB = Math.min(B, setRows || 8);
  if (!setRows) while (RB > 1 && H * chunks * Math.ceil(B / RB) < 256) RB = Math.ceil(RB / 2);
  const U = bounded(fusedTuning.lruUnroll || envInt('GRIFFIN_FUSED_LRU_UNROLL'), 16) || 4;
  const want = bounded(fusedTuning.lruSlices || envInt('GRIFFIN_FUSED_LRU_SLICES'), 256) || 16;
  // Fewer slices until the workgroup fits; then fewer rows (the head's conv outputs alone may not).
  for (; RB >= 1; RB = RB > 1 ? Math.ceil(RB / 2) : 0) {
    for (let JS = want; JS >= 1; JS = Math.floor(JS / 2)) {
      const spec = {B, E, H, W, CC, JS, RB, U, step};
      if (CC * JS <= 256 && rgLruSharedBytes(spec) <= sharedLimit) return spec;
    }
  }
  return {B, E, H, W, CC, JS: 1, RB: 1, U, step};
}

/**
 * Tuning rows from which the step's weight products run as tiled matmuls instead of GEMVs
 * (batched_matmul.ts): decodeMatmulConfig.rows if set (non-zero; -1: never), else
 * GRIFFIN_DECODE_MATMUL_ROWS (0: never), else 16 (with split-K the matmuls win from 16 rows, the GEMVs
 * at 8: bench/results/NOTES.md, 2026-12-03 fourth session).
 */
export const decodeMatmulConfig = {rows: 0};

export function decodeMatmulRows(): number {
  if (decodeMatmulConfig.rows !== 0) return Math.max(0, decodeMatmulConfig.rows);
  return envIntInRange('GRIFFIN_DECODE_MATMUL_ROWS', 16, 0, 1024);
}

/** Whether an engine tuned for R rows runs its weight products as matmuls. */
export function decodeMatmulApplies(R: number): boolean {
  const t = decodeMatmulRows();
  return t > 0 && R >= t;
}

/** The in-plan greedy pick's slices per row (default ~2048 values each, at most 256; GRIFFIN_FUSED_ARGMAX_SLICES). */
export function argmaxSlices(V: number): number {
  const want = fusedTuning.argmaxSlices || envInt('GRIFFIN_FUSED_ARGMAX_SLICES');
  return want ? Math.max(1, Math.min(256, want)) : argmaxGroups(V);
}

/**
 * Whether greedy decoding picks inside the step's own plan (default on; GRIFFIN_FUSED_ARGMAX=0
 * or fusedTuning.argmax = -1: a separate pick, ops/row_argmax, before each step).
 */
export function inPlanArgmax(): boolean {
  if (fusedTuning.argmax) return fusedTuning.argmax > 0;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_FUSED_ARGMAX : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}
