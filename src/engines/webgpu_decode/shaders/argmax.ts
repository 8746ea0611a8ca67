/**
 * The greedy pick inside a decode step: each row's argmax of the logits, in two dispatches after
 * the head. `part`: G workgroups per row each take a contiguous slice of the row and leave its
 * first maximum (value bits, index); `final`: one workgroup per row reduces the G candidates and
 * writes the id into the step buffer (the next step's ids: it never leaves the GPU) and into `ids`
 * (what the host reads back, 4 bytes per row). The first index of the maximum wins, NaN never
 * wins, a row of NaN gives -1 (as ops/row_argmax).
 *   import {stepLayout} from './common';
 *   const spec = {B: 2, V: 256000, G: argmaxGroups(256000), T: 256, step: stepLayout(2, 128)};
 *   const [part, final] = [argmaxPartSource(spec), argmaxFinalSource(spec)];   // grids [G, B, 1] and [B, 1, 1]
 *
 * Shape letters: B batch rows, V vocabulary, G slices per row, T invocations per workgroup.
 */
import {argmaxCompareWgsl} from '../../../../ops/row_argmax/wgsl';
import type {StepLayout} from './common';

export interface ArgmaxSpec {
  B: number;
  V: number;
  /** Slices per row (the part kernel's workgroups per row), at most T. */
  G: number;
  T: number;
  step: StepLayout;
}

export type ArgmaxPartBinding = 'logits' | 'cand';
export type ArgmaxFinalBinding = 'cand' | 'step' | 'ids';

/** Slices per row: about 2048 values each, at most 256 (one final workgroup reduces them). */
export function argmaxGroups(V: number): number {
  return Math.max(1, Math.min(256, Math.ceil(V / 2048)));
}

/** Candidate buffer words: per row and slice, the value's bits and the index. */
export function argmaxCandWords(s: Pick<ArgmaxSpec, 'B' | 'G'>): number {
  return 2 * s.B * s.G;
}

const HELPERS = (T: number) => `${argmaxCompareWgsl(T)}

fn reduce(t : u32) {
  workgroupBarrier();
  for (var s = ${T / 2}u; s > 0u; s = s >> 1u) {
    if (t < s && beats(bestV[t + s], bestI[t + s], bestV[t], bestI[t])) {
      bestV[t] = bestV[t + s];
      bestI[t] = bestI[t + s];
    }
    workgroupBarrier();
  }
}`;

function check(s: ArgmaxSpec): void {
  if (!(s.T >= 1 && (s.T & (s.T - 1)) === 0)) throw new Error(`argmax: ${s.T} threads is not a power of 2`);
  if (!(s.G >= 1 && s.G <= s.T)) throw new Error(`argmax: ${s.G} slices for ${s.T} threads`);
}

/** Bindings: logits [B, V] (f32), cand [B, G, 2] (u32, written). Grid [G, B, 1]. */
export function argmaxPartSource(s: ArgmaxSpec): string {
  check(s);
  const {V, G, T} = s;
  const C = Math.ceil(V / G);
  return `
@group(0) @binding(0) var<storage, read> logits : array<f32>;
@group(0) @binding(1) var<storage, read_write> cand : array<u32>;
${HELPERS(T)}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let g = wid.x;
  let b = wid.y;
  let lo = g * ${C}u;
  let hi = min(lo + ${C}u, ${V}u);
  var bv = 0.0;
  var bi = -1;
  // Within one invocation the indices only grow: a tie never replaces.
  for (var i = lo + t; i < hi; i = i + ${T}u) {
    let v = logits[b * ${V}u + i];
    if (!isNan(v) && (bi < 0 || v > bv)) { bv = v; bi = i32(i); }
  }
  bestV[t] = bv;
  bestI[t] = bi;
  reduce(t);
  if (t == 0u) {
    cand[(b * ${G}u + g) * 2u] = bitcast<u32>(bestV[0]);
    cand[(b * ${G}u + g) * 2u + 1u] = bitcast<u32>(bestI[0]);
  }
}`;
}

/** Bindings: cand [B, G, 2], step (ids written at step.ids), ids [B] (i32). Grid [B, 1, 1]. */
export function argmaxFinalSource(s: ArgmaxSpec): string {
  check(s);
  const {G, T} = s;
  return `
@group(0) @binding(0) var<storage, read> cand : array<u32>;
@group(0) @binding(1) var<storage, read_write> step : array<u32>;
@group(0) @binding(2) var<storage, read_write> ids : array<i32>;
${HELPERS(T)}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let b = wid.x;
  var bv = 0.0;
  var bi = -1;
  if (t < ${G}u) {
    bv = bitcast<f32>(cand[(b * ${G}u + t) * 2u]);
    bi = bitcast<i32>(cand[(b * ${G}u + t) * 2u + 1u]);
  }
  bestV[t] = bv;
  bestI[t] = bi;
  reduce(t);
  if (t == 0u) {
    step[${s.step.ids}u + b] = bitcast<u32>(bestI[0]);
    ids[b] = bestI[0];
  }
}`;
}
