/**
 * The prefill RG-LRU scan in chunks of L steps, parallel over them: the same results as the
 * serial scan (scan.ts; the same step, scan_step.ts) but with b x ceil(t / L) x E invocations instead of b x E, so that a long
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
import {scanStepWgsl} from './scan_step';

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

/**
 * Both dispatches' opening: the step function, `bindings` (their declarations), then main's
 * invocation (channel c, chunk q, row r) out of range returned, t, b and nq (the chunk count) at hand.
 */
function opening(s: ScanChunkedSpec, bindings: string[]): string {
  const {E, L} = s;
  return `
${COMMON_WGSL}
${scanStepWgsl(E)}
${bindings.map((d, i) => `@group(0) @binding(${i}) ${d}`).join('\n')}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let c = gid.x;
  let q = gid.y;
  let r = gid.z;
  let t = dims[${DIMS.T}u];
  if (c >= ${E}u || q * ${L}u >= t) { return; }
  let b = dims[${DIMS.M}u] / t;
  let nq = (t + ${L - 1}u) / ${L}u;`;
}

const read = (name: string) => `var<storage, read> ${name} : array<f32>;`;
const readWrite = (name: string) => `var<storage, read_write> ${name} : array<f32>;`;
const DIMS_POS = ['var<storage, read> dims : array<u32>;', 'var<storage, read> pos : array<u32>;'];

export function scanPartSource(s: ScanChunkedSpec): string {
  const {E, W, L} = s;
  return `${opening(s, [...DIMS_POS, read('cv'), read('gates'), read('rp'), read('st'), readWrite('sc')])}
  let sp = softplusT(rp[c]);
  var h = 0.0;
  var prod = 1.0;
  let j1 = min(t, (q + 1u) * ${L}u);
  for (var j = q * ${L}u; j < j1; j = j + 1u) {
    let ax = rgLruStep(r * t + j, c, sp);
    h = ax.x * h + ax.y;
    prod = prod * ax.x;
  }
  let at = (1u + b + (r * nq + q) * 2u) * ${E}u + c;
  sc[at] = prod;
  sc[at + ${E}u] = h;
  if (q == 0u) { sc[(1u + r) * ${E}u + c] = st[b * ${W * E}u + r * ${E}u + c]; }
  if (q == 0u && r == 0u) { sc[c] = sp; }
}`;
}

export function scanFinishSource(s: ScanChunkedSpec): string {
  const {E, W, L} = s;
  const bindings = [...DIMS_POS, read('uy'), read('cv'), read('gates'), read('sc'), readWrite('st'), readWrite('o')];
  return `${opening(s, bindings)}
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
    let ax = rgLruStep(i, c, sp);
    h = ax.x * h + ax.y;
    o[i * ${E}u + c] = h * uy[i * ${2 * E}u + ${E}u + c];
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
