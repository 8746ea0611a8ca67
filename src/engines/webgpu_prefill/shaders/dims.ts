/**
 * The fused prefill engine's per-chunk words: what every kernel reads from its `dims` binding
 * (array<u32>), and the 2-D grid that covers a number of invocations past the 65,535 workgroups
 * one grid dimension allows.
 *   const words = new Uint32Array(DIMS_WORDS);   words[DIMS.M] = b * t;   words[DIMS.T] = t;
 *   const grid = flatGrid(b * t * d, 256, 65535);   // [x, y, 1]; the kernel's flat index: flatIndex('wid', 'nwg', 'lid', 256)
 *
 * Every shape is a WGSL constant in the kernels except the chunk's token rows M = b * t, which
 * change per chunk: the host writes these words before each chunk.
 *
 * Shape letters: b batch rows, t tokens per row in the chunk, M = b t token rows, d hidden_size.
 */

/** Word offsets in `dims`. */
export const DIMS = {
  /** Token rows of the chunk (b t), row-major: batch row r, step j -> r t + j. */
  M: 0,
  /** Tokens per batch row in the chunk. */
  T: 1,
  /** The attention ring slot the chunk's first key goes to (the decode engine's head). */
  HEAD: 2,
  /** The conv ring slot the chunk's first input goes to (the decode engine's convNext). */
  CONV: 3,
} as const;

/** Words of the dims buffer (the rest, up to 16, are zero and free for kernels that need more). */
export const DIMS_WORDS = 16;

/** A grid of workgroups of `size` invocations covering n (x first, at most maxX per dimension). */
export function flatGrid(n: number, size: number, maxX: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / size));
  const x = Math.min(groups, maxX);
  return [x, Math.ceil(groups / x), 1];
}

/** WGSL of the flat invocation index under flatGrid (builtins workgroup_id, num_workgroups, local_invocation_index). */
export function flatIndex(wid: string, nwg: string, lid: string, size: number): string {
  return `((${wid}.y * ${nwg}.x + ${wid}.x) * ${size}u + ${lid})`;
}
