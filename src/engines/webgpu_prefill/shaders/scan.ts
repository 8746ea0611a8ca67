/**
 * The prefill RG-LRU scan kernel: from the gates' pre-activations of a chunk (the block-diagonal
 * matmuls, biases added, side by side in one buffer), a = exp(-8 sigmoid(ga) softplus(p)), mult = sqrt(1 - a^2), xn = conv *
 * sigmoid(gx) * mult, h_j = a_j h_{j-1} + xn_j (a = 0, mult = 1 at a document start: position 0),
 * then o = h * gelu(y) (the step: scan_step.ts); h starts from and ends in the decode engine's state, and the chunk's last
 * W-1 conv inputs go into its conv ring. One invocation per (batch row, channel), serial over the
 * chunk's steps.
 *   const code = prefillScanSource({E: config.lru_width, W: config.conv1d_width});
 *   const grid = prefillScanGrid(config.lru_width, 2);   // for b = 2 batch rows
 *
 * The conv ring after the chunk is what decoding the chunk one token at a time leaves: step j's
 * input in slot (conv + j) % W, conv = dims[DIMS.CONV]; slots of steps before the chunk keep their
 * history unless the chunk holds a document start (then they are zeroed, as the decode kernel
 * does at position 0).
 *
 * Shape letters: M token rows (b t), E lru_width, W conv1d_width.
 */
import {COMMON_WGSL} from '../../webgpu_decode/shaders/common';
import {DIMS} from './dims';
import {scanStepWgsl} from './scan_step';

export interface PrefillScanSpec {
  E: number;
  W: number;
}

export type PrefillScanBinding = 'dims' | 'pos' | 'uy' | 'cv' | 'gates' | 'rp' | 'st' | 'o';

const WG = 64;

/** Workgroups for b batch rows. */
export function prefillScanGrid(E: number, b: number): [number, number, number] {
  return [Math.ceil(E / WG), b, 1];
}

/**
 * Bindings: dims, pos [M], uy [M, 2E] (u | gelu(y)), cv [M, E] (conv outputs), gates [M, 2E]
 * (input gate | recurrent gate pre-activations), rp [E] (recurrent_param), st (conv ring [b, W,
 * E] | h [b, E], read and written), o [M, E] (out: h * gelu(y)).
 */
export function prefillScanSource(s: PrefillScanSpec): string {
  const {E, W} = s;
  const HOFF = `b * ${W * E}u`;
  return `
${COMMON_WGSL}
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> uy : array<f32>;
@group(0) @binding(3) var<storage, read> cv : array<f32>;
@group(0) @binding(4) var<storage, read> gates : array<f32>;
@group(0) @binding(5) var<storage, read> rp : array<f32>;
@group(0) @binding(6) var<storage, read_write> st : array<f32>;
@group(0) @binding(7) var<storage, read_write> o : array<f32>;
${scanStepWgsl(E)}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let c = gid.x;
  let r = gid.y;
  if (c >= ${E}u) { return; }
  let t = dims[${DIMS.T}u];
  let b = dims[${DIMS.M}u] / t;
  let conv = dims[${DIMS.CONV}u];
  let sp = softplusT(rp[c]);
  let hi = ${HOFF} + r * ${E}u + c;
  var h = st[hi];
  var lastReset = -1;
  for (var j = 0u; j < t; j = j + 1u) {
    let i = r * t + j;
    if (pos[i] == 0u) { lastReset = i32(j); }
    let ax = rgLruStep(i, c, sp);
    h = ax.x * h + ax.y;
    o[i * ${E}u + c] = h * uy[i * ${2 * E}u + ${E}u + c];
  }
  st[hi] = h;
  // The conv ring: history entries after the chunk are steps t-(W-1) .. t-1.
  for (var q = 0; q < ${W - 1}; q = q + 1) {
    let jj = i32(t) - ${W - 1} + q;
    let slot = u32(i32(conv) + ${W} + jj % ${W}) % ${W}u;
    let at = (r * ${W}u + slot) * ${E}u + c;
    if (jj >= 0 && jj >= lastReset) {
      st[at] = uy[(r * t + u32(jj)) * ${2 * E}u + c];
    } else if (lastReset >= 0) {
      st[at] = 0.0;
    }
  }
}`;
}
