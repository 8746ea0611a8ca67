/**
 * The two small kernels around a split-K product (batched_matmul.ts; the tiled matmul's kSplit
 * stores each K slice's partial sums): before it, the RMSNorm of each input row written out
 * (xn = x / sqrt(mean(x^2) + eps) * (1 + g): the slices cannot scale by a norm they see a part
 * of); after it, the slices summed in order with the bias and the GEMV's epilogue (store, GeLU,
 * residual add, multiply, GeGLU, soft cap).
 *   const norm = rowNormSource({K: 2560, eps: 1e-6});                // grid [B, 1, 1]
 *   const fin = splitReduceSource({N: 2560, S: 8, P: 1, epilogue: 'residual', bias: true, outStride: 2560});
 *   const grid = splitReduceGrid({N: 2560}, b);
 *
 * Partial sums: part [B, P, S, N] (P 2: GeGLU's gate slices then its up slices).
 *
 * Shape letters: B rows, K input width, N output columns, S K slices, P 1 or 2.
 */
import {COMMON_WGSL, f32} from './common';

/** Threads of the norm kernel's workgroup (one per row; a fixed count: a row's sum never depends on B). */
const NORM_THREADS = 64;

export interface RowNormSpec {
  K: number;
  eps: number;
}

/** Bindings: x [B, K] (array<vec4<f32>>), g [K], xn [B, K]. K a multiple of 4. */
export function rowNormSource(s: RowNormSpec): string {
  const {K} = s,
    T = NORM_THREADS;
  if (!Number.isInteger(K) || K <= 0 || K % 4 !== 0) throw new Error(`row norm: K must be a multiple of 4, got ${K}`);
  const K4 = K / 4;
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> x : array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> g : array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xn : array<vec4<f32>>;
var<workgroup> red : array<f32, ${T}>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let row = wid.x * ${K4}u;
  var sq = 0.0;
  for (var i = t; i < ${K4}u; i = i + ${T}u) { let v = x[row + i]; sq = sq + dot(v, v); }
  red[t] = sq;
  workgroupBarrier();
  for (var st = ${T / 2}u; st > 0u; st = st >> 1u) {
    if (t < st) { red[t] = red[t] + red[t + st]; }
    workgroupBarrier();
  }
  let rs = 1.0 / sqrt(red[0] / ${f32(K)} + ${f32(s.eps)});
  for (var i = t; i < ${K4}u; i = i + ${T}u) { xn[row + i] = x[row + i] * rs * (vec4<f32>(1.0) + g[i]); }
}`;
}

export type SplitEpilogue = 'store' | 'gelu' | 'residual' | 'mul' | 'geglu' | 'softcap';

export interface SplitReduceSpec {
  N: number;
  S: number;
  /** 2: GeGLU (gate and up partials). */
  P: 1 | 2;
  epilogue: SplitEpilogue;
  /** Binding 'bias' [N] (geglu: [2N], gate's then up's). */
  bias: boolean;
  cap?: number;
  /** out row stride and column offset (floats). */
  outStride: number;
  outOffset?: number;
}

/** Threads per workgroup of the reduce kernel (one output column each). */
const REDUCE_THREADS = 64;

/** Workgroups for B rows: [column blocks, B, 1]. */
export function splitReduceGrid(s: {N: number}, B: number): [number, number, number] {
  return [Math.ceil(s.N / REDUCE_THREADS), B, 1];
}

/** Bindings: part [B, P, S, N], [bias], out. */
export function splitReduceSource(s: SplitReduceSpec): string {
  const {N, S, P} = s,
    T = REDUCE_THREADS;
  if (!Number.isInteger(S) || S < 1) throw new Error(`split reduce: S must be a positive integer, got ${S}`);
  if ((s.epilogue === 'geglu') !== (P === 2)) throw new Error('split reduce: geglu takes P = 2 and only it');
  if (s.epilogue === 'softcap' && !(s.cap != null && s.cap > 0)) throw new Error('split reduce: softcap needs a cap');
  const sum = (p: number) =>
    Array.from({length: S}, (_, k) => `part[base + ${(p * S + k) * N}u]`).reduce((a, b) => `(${a} + ${b})`);
  const lines: string[] = [`var v = ${sum(0)};`];
  if (s.bias) lines.push('v = v + bias[n];');
  const o = `out[m * ${s.outStride}u + ${s.outOffset ?? 0}u + n]`;
  switch (s.epilogue) {
    case 'geglu':
      lines.push(`var up = ${sum(1)};`);
      if (s.bias) lines.push(`up = up + bias[${N}u + n];`);
      lines.push(`${o} = geluT(v) * up;`);
      break;
    case 'gelu':
      lines.push(`${o} = geluT(v);`);
      break;
    case 'residual':
      lines.push(`${o} = ${o} + v;`);
      break;
    case 'mul':
      lines.push(`${o} = ${o} * v;`);
      break;
    case 'softcap':
      lines.push(`${o} = tanhP(v / ${f32(s.cap!)}) * ${f32(s.cap!)};`);
      break;
    default:
      lines.push(`${o} = v;`);
  }
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> part : array<f32>;
${s.bias ? '@group(0) @binding(1) var<storage, read> bias : array<f32>;' : ''}
@group(0) @binding(${s.bias ? 2 : 1}) var<storage, read_write> out : array<f32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let n = wid.x * ${T}u + t;
  if (n >= ${N}u) { return; }
  let m = wid.y;
  let base = m * ${P * S * N}u + n;
  ${lines.join('\n  ')}
}`;
}
