/**
 * The prefill chunk's RoPE kernel: rotates, in place in `qkv`, the first ROT channels of every
 * query and key head of each token row (halves p1, p2 -> [p1 cos - p2 sin, p2 cos + p1 sin], as
 * SPEC.md), with cos/sin from a table the host writes per chunk (ropeTable).
 *   const spec = {H: 10, K: 1, HD: 256, ROT: 128, W: 2048};
 *   const table = ropeTable([0, 1, 2], ropeInvFreq(128, 10000), 128);   // [M, ROT] for M = 3 rows
 *   const code = ropeSource(spec);   // bindings ropeBindings(spec), grid ropeGrid(3)
 *
 * Bindings: dims (u32: dims[0] = M token rows), rope [M, ROT] (per row ROT/2 cos, then ROT/2
 * sin), qkv [M, (H + 2K) HD] (read_write: q heads, then k heads, then v heads; v is untouched).
 *
 * Shape letters: M token rows of the chunk (b * t), H query heads, K key/value heads, HD head dim,
 * ROT rotary dims, T invocations per workgroup.
 */
import type {ChunkAttnSpec} from './attention';

/** Workgroups along x of the grid; rows past it go to y. */
const ROWS_X = 32768;

export function ropeSource(spec: ChunkAttnSpec): string {
  const {H, K, HD, ROT} = spec;
  if (ROT % 2 !== 0 || ROT > HD) throw new Error(`prefill rope: rotary dims ${ROT} must be even and <= ${HD}`);
  const half = ROT / 2,
    QKV = (H + 2 * K) * HD,
    pairs = (H + K) * half;
  const T = ropeThreads(spec);
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> rope : array<f32>;
@group(0) @binding(2) var<storage, read_write> qkv : array<f32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let row = wid.y * ${ROWS_X}u + wid.x;
  if (row >= dims[0]) { return; }
  for (var p = tid; p < ${Math.max(1, pairs)}u; p = p + ${T}u) {
    if (p >= ${pairs}u) { break; }
    let hh = p / ${Math.max(1, half)}u;
    let j = p % ${Math.max(1, half)}u;
    let cs = rope[row * ${ROT}u + j];
    let sn = rope[row * ${ROT}u + ${half}u + j];
    let base = row * ${QKV}u + hh * ${HD}u + j;
    let x1 = qkv[base];
    let x2 = qkv[base + ${half}u];
    qkv[base] = x1 * cs - x2 * sn;
    qkv[base + ${half}u] = x2 * cs + x1 * sn;
  }
}`;
}

export function ropeBindings(_spec: ChunkAttnSpec): string[] {
  return ['dims', 'rope', 'qkv'];
}

/** One workgroup per token row. */
export function ropeGrid(M: number): [number, number, number] {
  if (!Number.isInteger(M) || M < 1) throw new Error(`prefill rope: ${M} token rows`);
  return [Math.min(M, ROWS_X), Math.ceil(M / ROWS_X), 1];
}

export function ropeThreads(spec: ChunkAttnSpec): number {
  const pairs = (spec.H + spec.K) * (spec.ROT / 2);
  return Math.min(256, Math.max(32, Math.ceil(pairs / 32) * 32));
}

/** RoPE's inverse frequencies, float32 as the decode engine keeps them: 1 / theta^(2j / ROT). */
export function ropeInvFreq(ROT: number, theta: number): Float32Array {
  return Float32Array.from({length: ROT / 2}, (_, j) => 1 / theta ** ((2 * j) / ROT));
}

/**
 * The rope table [M, ROT] of token rows at `positions`: per row ROT/2 cosines then ROT/2 sines of
 * angle = fround(fround(pos) * invFreq[j]), taken in float64 (as the decode engine's step does).
 */
export function ropeTable(positions: ArrayLike<number>, invFreq: Float32Array, ROT: number): Float32Array {
  const half = ROT / 2;
  if (invFreq.length !== half) throw new Error(`prefill rope: ${invFreq.length} frequencies for ${ROT} rotary dims`);
  const out = new Float32Array(Math.max(1, positions.length * ROT));
  for (let m = 0; m < positions.length; m++) {
    const p = Math.fround(positions[m]);
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(p * invFreq[j]);
      out[m * ROT + j] = Math.cos(angle);
      out[m * ROT + half + j] = Math.sin(angle);
    }
  }
  return out;
}
