/**
 * Plain chunk-attention kernels (one invocation per query row and head, no tiles): RoPE in place
 * on the chunk's q and k, windowed causal multi-query attention over the decode engine's ring and
 * the chunk, and the ring write after it. They stand in until the flash-style kernels
 * (shaders/attention.ts) are merged, and stay as a second implementation to compare against.
 *   const {num_attention_heads: H, num_key_value_heads: K, head_dim: HD, rotary_dim: ROT} = config;
 *   const spec: SimpleAttnSpec = {H, K, HD, ROT, W: config.attention_window_size};
 *   const codes = [simpleRopeSource(spec), simpleAttnSource(spec), simpleRingWriteSource(spec)];
 *
 * Positions: a row's positions count up by one per token (no padding), and a document starts at
 * position 0, so a key d steps before a query at position p is of its document when p >= d. The
 * ring: W + 1 slots per row; the key q + 1 steps before the chunk's first token is in slot
 * (head - 1 - q) mod S (head = dims[DIMS.HEAD], valid there when it is a real key).
 *
 * Shape letters: M token rows (b t), H query heads, K key/value heads, HD head dim, ROT rotary
 * dims, W window, S = W + 1 ring slots.
 */
import {f32} from '../../webgpu_decode/shaders/common';
import {DIMS, flatGrid, flatIndex} from './dims';

export interface SimpleAttnSpec {
  H: number;
  K: number;
  HD: number;
  ROT: number;
  W: number;
}

const WG = 64;

const HEADER = `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
        @builtin(local_invocation_index) lid : u32) {
  let idx = ${flatIndex('wid', 'nwg', 'lid', WG)};`;

/** Workgroups of the RoPE kernel for M rows. */
export function simpleRopeGrid(s: SimpleAttnSpec, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * (s.H + s.K) * Math.max(1, s.ROT / 2), WG, maxX);
}

/**
 * Bindings: dims, rope [M, ROT] (per row ROT/2 cos then ROT/2 sin), qkv [M, (H + 2K) HD] (q and
 * k rotated in place).
 */
export function simpleRopeSource(s: SimpleAttnSpec): string {
  const {H, K, HD, ROT} = s;
  const half = Math.max(1, ROT / 2);
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> rope : array<f32>;
@group(0) @binding(2) var<storage, read_write> qkv : array<f32>;
${HEADER}
  if (${ROT}u == 0u || idx >= dims[${DIMS.M}u] * ${(H + K) * half}u) { return; }
  let j = idx % ${half}u;
  let hh = (idx / ${half}u) % ${H + K}u;
  let i = idx / ${(H + K) * half}u;
  let cs = rope[i * ${2 * half}u + j];
  let sn = rope[i * ${2 * half}u + ${half}u + j];
  let base = i * ${(H + 2 * K) * HD}u + hh * ${HD}u;
  let p1 = qkv[base + j];
  let p2 = qkv[base + j + ${half}u];
  qkv[base + j] = p1 * cs - p2 * sn;
  qkv[base + j + ${half}u] = p2 * cs + p1 * sn;
}`;
}

export function simpleAttnGrid(s: SimpleAttnSpec, M: number, maxX: number): [number, number, number] {
  return flatGrid(M * s.H, WG, maxX);
}

/**
 * Bindings: dims, pos [M], qkv [M, (H + 2K) HD] (after RoPE), kr / vr [b, S, K, HD] and valid
 * [b, S] (the ring before the chunk), attn [M, H HD] (out).
 */
export function simpleAttnSource(s: SimpleAttnSpec): string {
  const {H, K, HD, W} = s;
  const S = W + 1,
    QKV = (H + 2 * K) * HD,
    G = H / K;
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> qkv : array<f32>;
@group(0) @binding(3) var<storage, read> kr : array<f32>;
@group(0) @binding(4) var<storage, read> vr : array<f32>;
@group(0) @binding(5) var<storage, read> valid : array<f32>;
@group(0) @binding(6) var<storage, read_write> attn : array<f32>;
${HEADER}
  if (idx >= dims[${DIMS.M}u] * ${H}u) { return; }
  let t = dims[${DIMS.T}u];
  let head = dims[${DIMS.HEAD}u];
  let h = idx % ${H}u;
  let i = idx / ${H}u;
  let r = i / t;
  let j = i % t;
  let p = pos[i];
  let kh = h / ${G}u;
  let qb = i * ${QKV}u + h * ${HD}u;
  var acc : array<f32, ${HD}>;
  var mx = -3.0e38;
  var den = 0.0;
  // Keys d = 1 .. W steps back (ring for d > j, the chunk otherwise), then the query's own key.
  for (var d = ${W}u; d + 1u > 0u; d = d - 1u) {
    if (d > p) { continue; }
    var kb : u32;
    var fromRing = false;
    if (d > j) {
      let q = d - j - 1u;
      let slot = (head + ${S}u - 1u - q) % ${S}u;
      if (valid[r * ${S}u + slot] <= 0.0) { continue; }
      kb = ((r * ${S}u + slot) * ${K}u + kh) * ${HD}u;
      fromRing = true;
    } else {
      kb = (i - d) * ${QKV}u + ${H * HD}u + kh * ${HD}u;
    }
    var sc = 0.0;
    for (var c = 0u; c < ${HD}u; c = c + 1u) {
      var kv : f32;
      if (fromRing) { kv = kr[kb + c]; } else { kv = qkv[kb + c]; }
      sc = sc + qkv[qb + c] * kv;
    }
    sc = sc * ${f32(1 / Math.sqrt(HD))};
    let nm = max(mx, sc);
    let corr = exp(mx - nm);
    let pr = exp(sc - nm);
    den = den * corr + pr;
    for (var c = 0u; c < ${HD}u; c = c + 1u) {
      var vv : f32;
      if (fromRing) { vv = vr[kb + c]; } else { vv = qkv[kb + ${K * HD}u + c]; }
      acc[c] = acc[c] * corr + pr * vv;
    }
    mx = nm;
  }
  for (var c = 0u; c < ${HD}u; c = c + 1u) {
    attn[i * ${H * HD}u + h * ${HD}u + c] = acc[c] / den;
  }
}`;
}

/** Workgroups of the ring write for b rows: one invocation per (row, slot, channel). */
export function simpleRingWriteGrid(s: SimpleAttnSpec, b: number, maxX: number): [number, number, number] {
  return flatGrid(b * (s.W + 1) * s.K * s.HD, WG, maxX);
}

/**
 * Bindings: dims, pos [M], qkv [M, (H + 2K) HD] (after RoPE), kr / vr [b, S, K, HD], valid [b, S]
 * (written). Step j of the chunk goes to slot (head + j) % S as if decoded one at a time: the
 * last min(t, W) steps are written, valid where they are of the row's last document; slots of
 * steps before the chunk stay, unless the chunk starts a document (then they are invalid).
 */
export function simpleRingWriteSource(s: SimpleAttnSpec): string {
  const {H, K, HD, W} = s;
  const S = W + 1,
    QKV = (H + 2 * K) * HD,
    KD = K * HD;
  return `
@group(0) @binding(0) var<storage, read> dims : array<u32>;
@group(0) @binding(1) var<storage, read> pos : array<u32>;
@group(0) @binding(2) var<storage, read> qkv : array<f32>;
@group(0) @binding(3) var<storage, read_write> kr : array<f32>;
@group(0) @binding(4) var<storage, read_write> vr : array<f32>;
@group(0) @binding(5) var<storage, read_write> valid : array<f32>;
${HEADER}
  let t = dims[${DIMS.T}u];
  let b = dims[${DIMS.M}u] / t;
  if (idx >= b * ${S * KD}u) { return; }
  let head = dims[${DIMS.HEAD}u];
  let c = idx % ${KD}u;
  let slot = (idx / ${KD}u) % ${S}u;
  let r = idx / ${S * KD}u;
  // The chunk's last document start in this row: its step (the position there is 0), or none.
  let pl = pos[r * t + t - 1u];
  let restart = pl < t - 1u || pos[r * t] == 0u;
  let first = t - 1u - min(pl, t - 1u);
  // The step that lands in this slot: j = slot - head (mod S), plus multiples of S, the last below t.
  let j0 = (slot + ${S}u - head) % ${S}u;
  let n = min(t, ${W}u);
  var j = j0;
  var hit = false;
  if (j0 < t) {
    j = j0 + ((t - 1u - j0) / ${S}u) * ${S}u;
    hit = j + n >= t;
  }
  let at = r * ${S}u + slot;
  if (hit) {
    let i = r * t + j;
    kr[at * ${KD}u + c] = qkv[i * ${QKV}u + ${H * HD}u + c];
    vr[at * ${KD}u + c] = qkv[i * ${QKV}u + ${(H + K) * HD}u + c];
    if (c == 0u) { valid[at] = select(0.0, 1.0, !restart || j >= first); }
  } else if (c == 0u && restart) {
    valid[at] = 0.0;
  }
}`;
}
