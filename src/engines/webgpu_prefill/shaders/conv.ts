/**
 * The prefill conv1d kernel: the causal depthwise convolution over a chunk of M token rows, its
 * history (the inputs before the chunk) read from the decode engine's conv ring. The ring itself
 * is updated later, by the scan kernel (scan.ts), once every conv output of the chunk is done.
 *   const code = prefillConvSource({E: config.lru_width, W: config.conv1d_width});
 *   const grid = prefillConvGrid(config.lru_width, 2048, 65535);   // for M = 2048 token rows
 *
 * cv[i, c] = cb[c] + sum_{k < W} cw[c, k] * u[step j - (W-1) + k of row r, c] (i = r t + j), a
 * tap that reaches back d = W-1-k steps counting only when the token's position is >= d (a
 * document starts at position 0, and a row's positions count up by one per token: no padding
 * here). Steps before the chunk are the ring's history: entry q (oldest first, q < W-1) is ring
 * slot (conv + 1 + q) % W, conv = dims[DIMS.CONV].
 *
 * Shape letters: M token rows (b t), E lru_width, W conv1d_width.
 */
import {DIMS, flatGrid, flatIndex} from './dims';

export interface PrefillConvSpec {
  E: number;
  W: number;
}

export type PrefillConvBinding = 'dims' | 'pos' | 'uy' | 'cw' | 'cb' | 'st' | 'cv';

const WG = 256;

export function prefillConvGrid(E: number, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * E, WG, maxX);
}

/**
 * Bindings: dims, pos [M] (u32 positions), uy [M, 2E] (linear_x's output in columns 0..E), cw
 * [E, W] (conv weight), cb [E] (conv bias), st (the decode engine's conv ring [b, W, E] | h [b, E]),
 * cv [M, E] (out). One invocation per output value.
 */
export function prefillConvSource(s: PrefillConvSpec): string {
  const {E, W} = s;
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> uy : array<f32>;
@group(0) @binding(3) var<storage, read> cw : array<f32>;
@group(0) @binding(4) var<storage, read> cb : array<f32>;
@group(0) @binding(5) var<storage, read> st : array<f32>;
@group(0) @binding(6) var<storage, read_write> cv : array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
        @builtin(local_invocation_index) lid : u32) {
  let idx = ${flatIndex('wid', 'nwg', 'lid', WG)};
  if (idx >= dims[${DIMS.M}u] * ${E}u) { return; }
  let t = dims[${DIMS.T}u];
  let conv = dims[${DIMS.CONV}u];
  let i = idx / ${E}u;
  let c = idx % ${E}u;
  let r = i / t;
  let j = i % t;
  let p = pos[i];
  var y = cb[c];
  for (var k = 0u; k < ${W}u; k = k + 1u) {
    let back = ${W - 1}u - k;
    if (p >= back) {
      var u : f32;
      if (j >= back) {
        u = uy[(i - back) * ${2 * E}u + c];
      } else {
        // History entry q = W-1 - (back - j), ring slot (conv + 1 + q) % W.
        let slot = (conv + ${W}u + j - back) % ${W}u;
        u = st[(r * ${W}u + slot) * ${E}u + c];
      }
      y = y + cw[c * ${W}u + k] * u;
    }
  }
  cv[idx] = y;
}`;
}
