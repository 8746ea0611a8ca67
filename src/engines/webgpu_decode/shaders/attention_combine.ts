/**
 * The attention combine kernel: the softmax merge of the partial kernel's chunks (per row and
 * query head: rescale each chunk's sum and P V by exp(chunk max - max), add, divide). Serial: one
 * workgroup per row and head, each invocation walking all chunks; split (combineSplit): the
 * chunks shared out among the invocations, the head dim among several workgroups.
 *   import {stepLayout} from './common';
 *   const {num_attention_heads: H, num_key_value_heads: K, head_dim: HD, rotary_dim: ROT} = config;
 *   const spec = {B: 1, H, K, HD, ROT, S: config.attention_window_size + 1, step: stepLayout(1, ROT / 2), CS: 16};
 *   const code = attnCombineSource({...spec, T: attnCombineThreads(HD)});   // grid [H, B, 1]
 *   const split = combineSplit({...spec, T: 64});
 *   const fast = attnCombineSource({...spec, T: 64}, split);   // grid attnCombineGrid(spec, split)
 *
 * Shape letters: B batch rows, H query heads, HD head dim, NC chunks, T invocations per workgroup.
 */
import {AttnSpec, attnChunks, NEG_WGSL} from './common';

export type AttnCombineBinding = 'part' | 'attn';

/**
 * The split combine's shape: JT head-dim entries per workgroup, CG chunk groups (T = JT x CG
 * invocations): the chunks' maxima and sums are reduced over all T invocations, and each P V
 * entry sums NC / CG chunks per invocation before the groups are added, so that no invocation
 * walks all NC chunks in a row (what makes the serial kernel latency-bound over a long window).
 */
export interface CombineSplit {
  JT: number;
  CG: number;
}

/** The split shape for a head dim: 64 entries (or the head dim) by as many chunk groups as fill 256 invocations. */
export function combineSplit(s: AttnSpec): CombineSplit {
  const JT = [64, 32, 16, 8, 4, 2, 1].find((j) => s.HD % j === 0) ?? 1;
  return {JT, CG: Math.max(1, Math.min(Math.floor(256 / JT), attnChunks(s)))};
}

/** The combine's grid: (H, B) serial, (H, B, HD / JT) split. */
export function attnCombineGrid(s: AttnSpec, split: CombineSplit | null = null): [number, number, number] {
  return [s.H, s.B, split == null ? 1 : s.HD / split.JT];
}

/** Bindings: part, attn [B, H HD]. Grid attnCombineGrid: (H, B) serial, (H, B, HD / JT) split. */
export function attnCombineSource(s: AttnSpec, split: CombineSplit | null = null): string {
  if (split != null) return splitSource(s, split);
  const {H, HD} = s;
  const NC = attnChunks(s),
    T = Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32));
  return `
@group(0) @binding(0) var<storage, read> part : array<f32>;
@group(0) @binding(1) var<storage, read_write> attn : array<f32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let h = wid.x;
  let b = wid.y;
  let base = (b * ${H}u + h) * ${NC}u;
  var m = ${NEG_WGSL};
  for (var c = 0u; c < ${NC}u; c = c + 1u) { m = max(m, part[(base + c) * ${HD + 2}u + ${HD}u]); }
  var l = 0.0;
  for (var c = 0u; c < ${NC}u; c = c + 1u) {
    let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
    if (mc > -1.0e38) { l = l + exp(mc - m) * part[(base + c) * ${HD + 2}u + ${HD + 1}u]; }
  }
  for (var j = t; j < ${HD}u; j = j + ${T}u) {
    var o = 0.0;
    for (var c = 0u; c < ${NC}u; c = c + 1u) {
      let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
      if (mc > -1.0e38) { o = o + exp(mc - m) * part[(base + c) * ${HD + 2}u + j]; }
    }
    attn[(b * ${H}u + h) * ${HD}u + j] = o / l;
  }
}`;
}

export function attnCombineThreads(HD: number): number {
  return Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32));
}

function splitSource(s: AttnSpec, sp: CombineSplit): string {
  const {H, HD} = s;
  const {JT, CG} = sp;
  const NC = attnChunks(s),
    T = JT * CG;
  if (HD % JT !== 0 || T > 256) throw new Error(`attention combine: ${JT} x ${CG} does not fit head dim ${HD}`);
  let P2 = 1;
  while (P2 < T) P2 *= 2; // the tree over T invocations, padded to a power of 2
  return `
@group(0) @binding(0) var<storage, read> part : array<f32>;
@group(0) @binding(1) var<storage, read_write> attn : array<f32>;
var<workgroup> red : array<f32, ${P2}>;
var<workgroup> wts : array<f32, ${NC}>;
var<workgroup> po : array<f32, ${T}>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let h = wid.x;
  let b = wid.y;
  let base = (b * ${H}u + h) * ${NC}u;
  // The chunks' largest max, over all invocations.
  var m = ${NEG_WGSL};
  for (var c = t; c < ${NC}u; c = c + ${T}u) { m = max(m, part[(base + c) * ${HD + 2}u + ${HD}u]); }
  red[t] = m;
  ${P2 > T ? `if (t < ${P2 - T}u) { red[${T}u + t] = ${NEG_WGSL}; }` : ''}
  workgroupBarrier();
  for (var st = ${P2 / 2}u; st > 0u; st = st >> 1u) {
    if (t < st) { red[t] = max(red[t], red[t + st]); }
    workgroupBarrier();
  }
  let mm = red[0];
  workgroupBarrier();
  // Each chunk's weight exp(max_c - max), and the weighted sum of the chunks' sums.
  var l = 0.0;
  for (var c = t; c < ${NC}u; c = c + ${T}u) {
    let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
    var w = 0.0;
    if (mc > -1.0e38) { w = exp(mc - mm); }
    wts[c] = w;
    l = l + w * part[(base + c) * ${HD + 2}u + ${HD + 1}u];
  }
  red[t] = l;
  ${P2 > T ? `if (t < ${P2 - T}u) { red[${T}u + t] = 0.0; }` : ''}
  workgroupBarrier();
  for (var st = ${P2 / 2}u; st > 0u; st = st >> 1u) {
    if (t < st) { red[t] = red[t] + red[t + st]; }
    workgroupBarrier();
  }
  // P V: entry j of this workgroup's slice, chunk group g.
  let jl = t % ${JT}u;
  let g = t / ${JT}u;
  let j = wid.z * ${JT}u + jl;
  var o = 0.0;
  for (var c = g; c < ${NC}u; c = c + ${CG}u) {
    let w = wts[c];
    if (w > 0.0) { o = o + w * part[(base + c) * ${HD + 2}u + j]; }
  }
  po[t] = o;
  workgroupBarrier();
  if (g == 0u) {
    var sum = 0.0;
    for (var k = 0u; k < ${CG}u; k = k + 1u) { sum = sum + po[k * ${JT}u + jl]; }
    attn[(b * ${H}u + h) * ${HD}u + j] = sum / red[0];
  }
}`;
}
