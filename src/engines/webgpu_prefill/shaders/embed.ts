/**
 * The prefill embedding gather: x = E[id] * scale for the chunk's M token rows whose id falls in
 * one piece of the vocabulary matrix (a matrix past the binding limit is held in row pieces: one
 * dispatch each). M comes from `dims`, so one pipeline serves every chunk length. The gather
 * itself is the decode engine's (webgpu_decode/shaders/embed.ts, embedGather).
 *   const code = prefillEmbedSource({D: config.hidden_size, start: 0, rows: config.vocab_size, scale: 50.5});
 *   const grid = prefillEmbedGrid(config.hidden_size, 2048, 65535);   // for M = 2048 token rows
 *
 * Shape letters: M token rows, D hidden size, rows / start the piece's rows and first row.
 */
import {type EmbedPiece, embedGather} from '../../webgpu_decode/shaders/embed';
import {DIMS, flatGrid, flatIndex} from './dims';

export type PrefillEmbedSpec = EmbedPiece;

export type PrefillEmbedBinding = 'e' | 's' | 'z' | 'dims' | 'ids' | 'x';

const WG = 256;

/** Workgroups for M token rows. */
export function prefillEmbedGrid(D: number, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * D, WG, maxX);
}

/**
 * Bindings: e, [s], [z] (embedGather), dims, ids [M] (u32), x [M, D]. One invocation per output
 * value; rows whose id lies in another piece are left as they are.
 */
export function prefillEmbedSource(s: PrefillEmbedSpec): string {
  const {D} = s;
  const g = embedGather(s, [
    'var<storage, read> dims : array<u32>;',
    'var<storage, read> ids : array<u32>;',
    'var<storage, read_write> x : array<f32>;',
  ]);
  return `${g.head}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
        @builtin(local_invocation_index) lid : u32) {
  let idx = ${flatIndex('wid', 'nwg', 'lid', WG)};
  if (idx >= dims[${DIMS.M}u] * ${D}u) { return; }
  let i = idx / ${D}u;
  let j = idx % ${D}u;
  ${g.store('i32(ids[i])')}
}`;
}
