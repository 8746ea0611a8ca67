/**
 * out *= a over M token rows of N values: the second half of a GeGLU split in two matmuls (the
 * gate with GeLU into out, the up projection into a), when one matmul would bind more storage
 * buffers than the device allows (compact weights with scales and zero points).
 *   const code = prefillMulSource({N: config.intermediate_size / 2});
 *   const grid = prefillMulGrid(config.intermediate_size / 2, 2048, 65535);   // M = 2048 token rows
 *
 * Shape letters: M token rows, N values per row.
 */
import {DIMS, flatGrid, flatIndex} from './dims';

const WG = 256;

export type PrefillMulBinding = 'dims' | 'a' | 'out';

export function prefillMulGrid(N: number, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * N, WG, maxX);
}

/** Bindings: dims, a [M, N], out [M, N] (multiplied in place). */
export function prefillMulSource(s: {N: number}): string {
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> a : array<f32>;
@group(0) @binding(2) var<storage, read_write> out : array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
        @builtin(local_invocation_index) lid : u32) {
  let idx = ${flatIndex('wid', 'nwg', 'lid', WG)};
  if (idx >= dims[${DIMS.M}u] * ${s.N}u) { return; }
  out[idx] = out[idx] * a[idx];
}`;
}
