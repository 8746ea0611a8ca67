/**
 * The partial attention kernel: single-query attention of each row's query heads over one chunk
 * of CS ring slots: scores, the chunk's max and sum, and its P V (split-K, "flash decoding");
 * attention_combine.ts merges the chunks. Chunks are counted from the oldest slot (head + 1, the
 * step's ring slot + 1), not from slot 0, so that a row's sums run in the order of its tokens
 * whatever slot the ring has reached: the same window gives the same bits at any ring position
 * (a row joining a running engine, src/serve/slots.ts, computes what it computes alone).
 *   import {attnChunks, stepLayout} from './common';
 *   const {num_attention_heads: H, num_key_value_heads: K, head_dim: HD, rotary_dim: ROT} = config;
 *   const spec = {B: 1, H, K, HD, ROT, S: config.attention_window_size + 1, step: stepLayout(1, ROT / 2), CS: 16,
 *     T: attnThreads(H / K, 16, HD)};
 *   const code = attnPartialSource(spec);   // grid [attnChunks(spec), K, B]
 *
 * Shape letters: B batch rows, H query heads, K key/value heads, G = H / K query heads per key
 * head, HD head dim, S ring slots, CS slots per chunk, NC chunks, T invocations per workgroup.
 */
import {AttnSpec, attnChunks, f32, NEG_WGSL} from './common';

export type AttnPartialBinding = 'qr' | 'kr' | 'vr' | 'valid' | 'part' | 'step';
export type AttnRopePartialBinding = 'qkv' | 'kr' | 'vr' | 'valid' | 'part' | 'step';

/** Bindings: qr, kr, vr, valid, part [B, H, NC, HD + 2] (o, max, sum), step. Grid (NC, K, B). */
export function attnPartialSource(s: AttnSpec): string {
  const {H, K, HD, S, CS, T} = s;
  const G = H / K;
  const vec = HD % 4 === 0;
  const scale = 1 / Math.sqrt(HD);
  // q and k as vec4 when the head dim allows (the same buffers the RoPE kernel writes as f32).
  const dotLoop = vec
    ? `for (var j = 0u; j < ${HD / 4}u; j = j + 1u) { d = d + dot(qr[qb / 4u + j], kr[kb / 4u + j]); }`
    : `for (var j = 0u; j < ${HD}u; j = j + 1u) { d = d + qr[qb + j] * kr[kb + j]; }`;
  const QK = vec ? 'array<vec4<f32>>' : 'array<f32>';
  return `
@group(0) @binding(0) var<storage, read> qr : ${QK};
@group(0) @binding(1) var<storage, read> kr : ${QK};
@group(0) @binding(2) var<storage, read> vr : array<f32>;
@group(0) @binding(3) var<storage, read> valid : array<f32>;
@group(0) @binding(4) var<storage, read_write> part : array<f32>;
@group(0) @binding(5) var<storage, read> step : array<u32>;
var<workgroup> sc : array<f32, ${G * CS}>;
var<workgroup> mx : array<f32, ${G}>;
var<workgroup> sm : array<f32, ${G}>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let c = wid.x;
  let kh = wid.y;
  let b = wid.z;
  let s0 = c * ${CS}u;
  // Relative slot r (0 = oldest) is ring slot (head + 1 + r) mod S.
  let first = step[${s.step.slot}u] + 1u;
  for (var p = t; p < ${G * CS}u; p = p + ${T}u) {
    let g = p / ${CS}u;
    let r = s0 + p % ${CS}u;
    let sl = (first + r) % ${S}u;
    var v = ${NEG_WGSL};
    if (r < ${S}u) {
      if (valid[b * ${S}u + sl] > 0.0) {
        let qb = (b * ${H}u + kh * ${G}u + g) * ${HD}u;
        let kb = ((b * ${S}u + sl) * ${K}u + kh) * ${HD}u;
        var d = 0.0;
        ${dotLoop}
        v = d * ${f32(scale)};
      }
    }
    sc[p] = v;
  }
${chunkSoftmaxPV(
  s,
  (acc) => `        if (valid[b * ${S}u + sl] > 0.0) {
          let v = vr[((b * ${S}u + sl) * ${K}u + kh) * ${HD}u + j];
          ${acc}
        }`,
)}
}`;
}

/**
 * WGSL: the kernels' second half, after the scores of the chunk are in sc: per query head the
 * chunk's softmax numerators (exp(score - max), zero for an empty slot), max and sum; then P V,
 * where invocation j reads each slot's value once for the G query heads sharing it (`slotValue`
 * adds slot sl's value v to acc with the `acc` statement it is given, or skips the slot); then
 * acc, max and sum into part.
 */
function chunkSoftmaxPV(s: AttnSpec, slotValue: (acc: string) => string): string {
  const {H, K, HD, S, CS, T} = s;
  const G = H / K,
    NC = attnChunks(s);
  const acc = `for (var g = 0u; g < ${G}u; g = g + 1u) { acc[g] = acc[g] + sc[g * ${CS}u + i] * v; }`;
  return `  workgroupBarrier();
  if (t < ${G}u) {
    var m = ${NEG_WGSL};
    for (var i = 0u; i < ${CS}u; i = i + 1u) { m = max(m, sc[t * ${CS}u + i]); }
    var l = 0.0;
    for (var i = 0u; i < ${CS}u; i = i + 1u) {
      let sv = sc[t * ${CS}u + i];
      var e = 0.0;
      if (sv > -1.0e38) { e = exp(sv - m); }
      sc[t * ${CS}u + i] = e;
      l = l + e;
    }
    mx[t] = m;
    sm[t] = l;
  }
  workgroupBarrier();
  // P V: invocation j reads each valid slot's value once for the G query heads sharing it.
  for (var j = t; j < ${HD}u; j = j + ${T}u) {
    var acc : array<f32, ${G}>;
    for (var g = 0u; g < ${G}u; g = g + 1u) { acc[g] = 0.0; }
    for (var i = 0u; i < ${CS}u; i = i + 1u) {
      let r = s0 + i;
      let sl = (first + r) % ${S}u;
      if (r < ${S}u) {
${slotValue(acc)}
      }
    }
    for (var g = 0u; g < ${G}u; g = g + 1u) {
      part[((b * ${H}u + kh * ${G}u + g) * ${NC}u + c) * ${HD + 2}u + j] = acc[g];
    }
  }
  if (t < ${G}u) {
    let pb = ((b * ${H}u + kh * ${G}u + t) * ${NC}u + c) * ${HD + 2}u;
    part[pb + ${HD}u] = mx[t];
    part[pb + ${HD + 1}u] = sm[t];
  }`;
}

/** Invocations of the partial attention kernel: enough for the scores of a chunk and for the head dim, at most 256. */
export function attnThreads(G: number, CS: number, HD: number): number {
  return Math.min(256, Math.max(32, Math.ceil(Math.max(G * CS, HD) / 32) * 32));
}

/** Workgroup memory of attnRopePartialSource, bytes: the rotated queries and new key, the scores, max and sum. */
export function attnRopePartialSharedBytes(s: AttnSpec): number {
  const G = s.H / s.K;
  return 4 * (G * s.HD + s.HD + G * s.CS + 2 * G);
}

/**
 * The partial kernel with the RoPE kernel's work folded in (one dispatch fewer per attention
 * layer): each workgroup rotates its G query heads from qkv [B, (H+2K) HD] into workgroup memory;
 * the workgroup whose chunk holds the ring's new slot (the last chunk: relative slot S - 1)
 * rotates the new key, stores it and the new value into the ring and attends to them from
 * workgroup memory / qkv; the kv-head-0 workgroups write their chunk's slot validity (the new slot
 * valid, and at a document start, position 0, every other slot cleared). A slot counts as valid
 * if it is the new one, or if the row is not at a document start and its stored validity says so,
 * so that it makes no difference whether another workgroup's validity writes are seen yet.
 * Bindings: qkv, kr, vr, valid (written), part, step. Grid (NC, K, B).
 */
export function attnRopePartialSource(s: AttnSpec): string {
  const {H, K, HD, ROT, S, CS, T} = s;
  const G = H / K,
    QKV = (H + 2 * K) * HD,
    half = ROT / 2;
  const vec = HD % 4 === 0;
  const scale = 1 / Math.sqrt(HD);
  const V4 = vec ? HD / 4 : HD; // vectors per head
  const VT = vec ? 'vec4<f32>' : 'f32';
  const lastChunk = Math.floor((S - 1) / CS);
  // Element j of a rotated head at qkv offset `base`.
  const rotFn = `
fn rotated(base : u32, j : u32, b : u32) -> f32 {
  if (j >= ${ROT}u) { return qkv[base + j]; }
  var jj = j;
  if (j >= ${half}u) { jj = j - ${half}u; }
  let i = b * ${s.step.half}u + jj;
  let cs = bitcast<f32>(step[${s.step.cos}u + i]);
  let sn = bitcast<f32>(step[${s.step.sin}u + i]);
  if (j < ${half}u) { return qkv[base + j] * cs - qkv[base + j + ${half}u] * sn; }
  return qkv[base + j] * cs + qkv[base + j - ${half}u] * sn;
}
fn rotVec(base : u32, p : u32, b : u32) -> ${VT} {
  ${vec ? 'let j = p * 4u; return vec4<f32>(rotated(base, j, b), rotated(base, j + 1u, b), rotated(base, j + 2u, b), rotated(base, j + 3u, b));' : 'return rotated(base, p, b);'}
}`;
  const term = (k: string) => (vec ? `dot(qs[g * ${V4}u + j], ${k})` : `qs[g * ${V4}u + j] * ${k}`);
  const dotOf = (k: string) => `for (var j = 0u; j < ${V4}u; j = j + 1u) { d = d + ${term(k)}; }`;
  return `
@group(0) @binding(0) var<storage, read> qkv : array<f32>;
@group(0) @binding(1) var<storage, read_write> kr : array<${VT}>;
@group(0) @binding(2) var<storage, read_write> vr : array<f32>;
@group(0) @binding(3) var<storage, read_write> valid : array<f32>;
@group(0) @binding(4) var<storage, read_write> part : array<f32>;
@group(0) @binding(5) var<storage, read> step : array<u32>;
var<workgroup> qs : array<${VT}, ${G * V4}>;
var<workgroup> kn : array<${VT}, ${V4}>;
var<workgroup> sc : array<f32, ${G * CS}>;
var<workgroup> mx : array<f32, ${G}>;
var<workgroup> sm : array<f32, ${G}>;
${rotFn}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let c = wid.x;
  let kh = wid.y;
  let b = wid.z;
  let s0 = c * ${CS}u;
  let head = step[${s.step.slot}u];
  let pos = step[${s.step.pos}u + b];
  // Relative slot r (0 = oldest) is ring slot (head + 1 + r) mod S; the new slot is r = S - 1.
  let first = head + 1u;
  let hasNew = c == ${lastChunk}u;
  for (var p = t; p < ${G * V4}u; p = p + ${T}u) {
    let g = p / ${V4}u;
    qs[p] = rotVec(b * ${QKV}u + (kh * ${G}u + g) * ${HD}u, p % ${V4}u, b);
  }
  if (hasNew) {
    let kb = ((b * ${S}u + head) * ${K}u + kh) * ${V4}u;
    for (var p = t; p < ${V4}u; p = p + ${T}u) {
      let kv = rotVec(b * ${QKV}u + (${H}u + kh) * ${HD}u, p, b);
      kn[p] = kv;
      kr[kb + p] = kv;
    }
    let vb = ((b * ${S}u + head) * ${K}u + kh) * ${HD}u;
    for (var j = t; j < ${HD}u; j = j + ${T}u) { vr[vb + j] = qkv[b * ${QKV}u + (${H + K}u + kh) * ${HD}u + j]; }
  }
  workgroupBarrier();
  for (var p = t; p < ${G * CS}u; p = p + ${T}u) {
    let g = p / ${CS}u;
    let r = s0 + p % ${CS}u;
    let sl = (first + r) % ${S}u;
    var v = ${NEG_WGSL};
    if (r < ${S}u) {
      if (sl == head) {
        var d = 0.0;
        ${dotOf('kn[j]')}
        v = d * ${f32(scale)};
      } else if (pos != 0u && valid[b * ${S}u + sl] > 0.0) {
        let kb = ((b * ${S}u + sl) * ${K}u + kh) * ${V4}u;
        var d = 0.0;
        ${dotOf('kr[kb + j]')}
        v = d * ${f32(scale)};
      }
    }
    sc[p] = v;
  }
${chunkSoftmaxPV(
  s,
  (acc) => `        var v = 0.0;
        var seen = false;
        if (sl == head) {
          v = qkv[b * ${QKV}u + (${H + K}u + kh) * ${HD}u + j];
          seen = true;
        } else if (pos != 0u && valid[b * ${S}u + sl] > 0.0) {
          v = vr[((b * ${S}u + sl) * ${K}u + kh) * ${HD}u + j];
          seen = true;
        }
        if (seen) {
          ${acc}
        }`,
)}
  // The chunk's slot validity for the next steps (kv head 0 only: every head shares it).
  if (kh == 0u) {
    for (var i = t; i < ${CS}u; i = i + ${T}u) {
      let r = s0 + i;
      let sl = (first + r) % ${S}u;
      if (r < ${S}u) {
        if (sl == head) {
          valid[b * ${S}u + sl] = 1.0;
        } else if (pos == 0u) {
          valid[b * ${S}u + sl] = 0.0;
        }
      }
    }
  }
}`;
}
