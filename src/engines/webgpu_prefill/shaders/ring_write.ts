/**
 * The prefill chunk's ring write: after the chunk's attention, its last keys (rotated) and values
 * go into the decode engine's attention ring exactly as if the chunk had been decoded one token at
 * a time from slot `head` (step j into slot (head + j) mod S, the last write of a slot winning, so
 * the last min(t, S) steps land), each slot written is valid unless a document starts (position
 * 0) after its step, and a document start in the chunk clears every slot not written after it.
 * The decode engine then continues at slot ringHeadAfter(head, t, W).
 *   const spec = {H: 10, K: 1, HD: 256, ROT: 128, W: 2048};
 *   const code = ringWriteSource(spec);   // bindings ringWriteBindings(spec), grid ringWriteGrid(spec, 4096, 2048)
 *   const next = ringHeadAfter(2048, 2048, 2048);   // the new head: 2047
 *
 * Bindings: dims (u32: dims[1] = t steps per batch row, dims[headWord] (default 2) = head), qkv
 * [M, (H + 2K) HD] (after RoPE), pos [M] (u32), kr, vr [b, S, K, HD], valid [b, S] (read_write).
 *
 * Shape letters: M token rows (b * t), b batch rows, t steps per row, H query heads, K key/value
 * heads, HD head dim, W window, S = W + 1 ring slots, T invocations per workgroup.
 */
import type {ChunkAttnSpec} from './attention';

export function ringWriteSource(spec: ChunkAttnSpec): string {
  const {H, K, HD, W} = spec;
  const HW = spec.headWord ?? 2;
  const S = W + 1,
    QKV = (H + 2 * K) * HD,
    KH = K * HD;
  const T = Math.min(256, Math.max(32, Math.ceil(KH / 32) * 32));
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> qkv : array<f32>;
@group(0) @binding(2) var<storage, read> pos : array<u32>;
@group(0) @binding(3) var<storage, read_write> kr : array<f32>;
@group(0) @binding(4) var<storage, read_write> vr : array<f32>;
@group(0) @binding(5) var<storage, read_write> valid : array<f32>;

var<workgroup> wLast : atomic<i32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let s = i32(wid.x);
  let r = wid.y;
  let t = i32(dims[1]);
  let head = i32(dims[${HW}]);
  if (t < 1) { return; }
  if (tid == 0u) { atomicStore(&wLast, -1); }
  workgroupBarrier();
  // The last document start among the steps that can decide this slot's validity.
  let rowBase = i32(r) * t;
  for (var j = max(0, t - ${S}) + i32(tid); j < t; j = j + ${T}) {
    if (pos[rowBase + j] == 0u) { atomicMax(&wLast, j); }
  }
  workgroupBarrier();
  let last = atomicLoad(&wLast);
  // The first step whose key would land here, then the last one.
  let first = (s - head + ${S}) % ${S};
  let at = r * ${S}u + u32(s);
  if (first < t) {
    let jw = first + ((t - 1 - first) / ${S}) * ${S};
    let src = u32(rowBase + jw) * ${QKV}u + ${H * HD}u;
    for (var e = tid; e < ${KH}u; e = e + ${T}u) {
      kr[at * ${KH}u + e] = qkv[src + e];
      vr[at * ${KH}u + e] = qkv[src + ${KH}u + e];
    }
    if (tid == 0u) { valid[at] = select(0.0, 1.0, jw >= last); }
  } else if (tid == 0u && last >= 0) {
    valid[at] = 0.0;
  }
}`;
}

export function ringWriteBindings(_spec: ChunkAttnSpec): string[] {
  return ['dims', 'qkv', 'pos', 'kr', 'vr', 'valid'];
}

/** Grid: ring slots, batch rows (M = b t). */
export function ringWriteGrid(spec: ChunkAttnSpec, M: number, t: number): [number, number, number] {
  if (!(Number.isInteger(t) && t >= 1 && M % t === 0 && M >= t)) throw new Error(`prefill ring write: M ${M}, t ${t}`);
  return [spec.W + 1, M / t, 1];
}

/** The ring slot the next token's key goes to after a chunk of t steps written from `head`. */
export function ringHeadAfter(head: number, t: number, W: number): number {
  return (head + t) % (W + 1);
}
