/**
 * The prefill RG-LRU scan in chunks of L steps, parallel over them: the same results as the
 * serial scan (scan.ts) but with b x ceil(t / L) x E invocations instead of b x E, so that a long
 * chunk of the prompt keeps the GPU busy.
 *   const spec = {E: config.lru_width, W: config.conv1d_width, L: 32};
 *   const [part, finish] = [scanPartSource(spec), scanFinishSource(spec)];   // both over scanChunkedGrid(spec, b, t)
 *
 * Two dispatches. part, per (row, chunk of L steps, channel), from h = 0: the chunk's end state
 * and the product of its decays a (a document start inside makes it 0). finish, per (row, chunk,
 * channel): h at the chunk's start from the state's h and the earlier chunks' (product, end
 * state) pairs, then the chunk's steps again from it, writing o = h * gelu(y); the last chunk's
 * invocations write h and the conv ring (as scan.ts does).
 *
 * Bindings: part: dims, pos, cv, gates, rp, st, sc (out: softplus(rp) [E], the state's h [b, E],
 * then [b, chunks, 2, E] product | end state); finish: dims, pos, uy, cv, gates, sc, st, o (see
 * scan.ts for the others). finish reads softplus(rp) and the h it starts from in sc: within 8
 * storage bindings, and no invocation reads st's h while the last chunk's write it.
 *
 * Shape letters: M token rows (b t), E lru_width, W conv1d_width, L steps per chunk of the scan.
 */
import {COMMON_WGSL} from '../../webgpu_decode/shaders/common';
import {DIMS} from './dims';

export interface ScanChunkedSpec {
  E: number;
  W: number;
  /** Steps per chunk of the scan. */
  L: number;
}

const WG = 64;

/** Workgroups of both dispatches: [channel groups, chunks, rows]. */
export function scanChunkedGrid(s: ScanChunkedSpec, b: number, t: number): [number, number, number] {
  return [Math.ceil(s.E / WG), Math.ceil(t / s.L), b];
}

/** Floats of the chunks' scratch for b rows of up to `capacity` steps. */
export function scanScratchFloats(s: ScanChunkedSpec, b: number, capacity: number): number {
  return s.E + b * s.E + b * Math.ceil(capacity / s.L) * 2 * s.E;
}

const HELPERS = `
fn softplusT(x : f32) -> f32 {
  // tfjs's: exp(x) below log(eps) + 2, x above -(log(eps) + 2), log(1 + exp(x)) between.
  let th = -13.942385152878742;
  if (x > -th) { return x; }
  if (x < th) { return exp(x); }
  return log(1.0 + exp(x));
}`;

/** The decay a and the normalised input xn of step i (channel c), as scan.ts computes them. */
function stepMath(E: number): string {
  return `
    let k = i * ${E}u + c;
    let g = i * ${2 * E}u + c;
    let logA = (sigm(gates[g + ${E}u]) * sp) * -8.0;
    var a = exp(logA);
    var mult = sqrt(1.0 - exp(logA * 2.0));
    if (pos[i] == 0u) {
      a = 0.0;
      mult = 1.0;
    }
    let xn = (cv[k] * sigm(gates[g])) * mult;`;
}

const MAIN = `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {`;

export function scanPartSource(s: ScanChunkedSpec): string {
  const {E, W, L} = s;
  return `
${COMMON_WGSL}
${HELPERS}
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> cv : array<f32>;
@group(0) @binding(3) var<storage, read> gates : array<f32>;
@group(0) @binding(4) var<storage, read> rp : array<f32>;
@group(0) @binding(5) var<storage, read> st : array<f32>;
@group(0) @binding(6) var<storage, read_write> sc : array<f32>;
${MAIN}
  let c = gid.x;
  let q = gid.y;
  let r = gid.z;
  let t = dims[${DIMS.T}u];
  if (c >= ${E}u || q * ${L}u >= t) { return; }
  let nq = (t + ${L - 1}u) / ${L}u;
  let sp = softplusT(rp[c]);
  var h = 0.0;
  var prod = 1.0;
  let j1 = min(t, (q + 1u) * ${L}u);
  for (var j = q * ${L}u; j < j1; j = j + 1u) {
    let i = r * t + j;
    ${stepMath(E)}
    h = a * h + xn;
    prod = prod * a;
  }
  let b = dims[${DIMS.M}u] / t;
  let at = (1u + b + (r * nq + q) * 2u) * ${E}u + c;
  sc[at] = prod;
  sc[at + ${E}u] = h;
  if (q == 0u) { sc[(1u + r) * ${E}u + c] = st[b * ${W * E}u + r * ${E}u + c]; }
  if (q == 0u && r == 0u) { sc[c] = sp; }
}`;
}

export function scanFinishSource(s: ScanChunkedSpec): string {
  const {E, W, L} = s;
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> uy : array<f32>;
@group(0) @binding(3) var<storage, read> cv : array<f32>;
@group(0) @binding(4) var<storage, read> gates : array<f32>;
@group(0) @binding(5) var<storage, read> sc : array<f32>;
@group(0) @binding(6) var<storage, read_write> st : array<f32>;
@group(0) @binding(7) var<storage, read_write> o : array<f32>;
${MAIN}
  let c = gid.x;
  let q = gid.y;
  let r = gid.z;
  let t = dims[${DIMS.T}u];
  if (c >= ${E}u || q * ${L}u >= t) { return; }
  let b = dims[${DIMS.M}u] / t;
  let nq = (t + ${L - 1}u) / ${L}u;
  let sp = sc[c];
  let hi = b * ${W * E}u + r * ${E}u + c;
  // h at this chunk's start: the state's h carried through the earlier chunks.
  var h = sc[(1u + r) * ${E}u + c];
  for (var p = 0u; p < q; p = p + 1u) {
    let at = (1u + b + (r * nq + p) * 2u) * ${E}u + c;
    h = sc[at] * h + sc[at + ${E}u];
  }
  let j1 = min(t, (q + 1u) * ${L}u);
  for (var j = q * ${L}u; j < j1; j = j + 1u) {
    let i = r * t + j;
    ${stepMath(E)}
    h = a * h + xn;
    o[k] = h * uy[i * ${2 * E}u + ${E}u + c];
  }
  if (q + 1u != nq) { return; }
  // The last chunk: h, and the conv ring's history after the chunk (steps t-(W-1) .. t-1).
  st[hi] = h;
  let conv = dims[${DIMS.CONV}u];
  let pl = pos[r * t + t - 1u];
  let restart = pl < t - 1u || pos[r * t] == 0u;
  let first = i32(t - 1u - min(pl, t - 1u));
  for (var qq = 0; qq < ${W - 1}; qq = qq + 1) {
    let jj = i32(t) - ${W - 1} + qq;
    let slot = u32(i32(conv) + ${W} + jj % ${W}) % ${W}u;
    let at = (r * ${W}u + slot) * ${E}u + c;
    if (jj >= 0 && (!restart || jj >= first)) {
      st[at] = uy[(r * t + u32(jj)) * ${2 * E}u + c];
    } else if (restart) {
      st[at] = 0.0;
    }
  }
}`;
}
