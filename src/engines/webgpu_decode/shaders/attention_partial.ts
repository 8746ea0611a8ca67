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

/** Bindings: qr, kr, vr, valid, part [B, H, NC, HD + 2] (o, max, sum), step. Grid (NC, K, B). */
export function attnPartialSource(s: AttnSpec): string {
  const {H, K, HD, S, CS, T} = s;
  const G = H / K,
    NC = attnChunks(s);
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
  workgroupBarrier();
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
        if (valid[b * ${S}u + sl] > 0.0) {
          let v = vr[((b * ${S}u + sl) * ${K}u + kh) * ${HD}u + j];
          for (var g = 0u; g < ${G}u; g = g + 1u) { acc[g] = acc[g] + sc[g * ${CS}u + i] * v; }
        }
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
  }
}`;
}

/** Invocations of the partial attention kernel: enough for the scores of a chunk and for the head dim, at most 256. */
export function attnThreads(G: number, CS: number, HD: number): number {
  return Math.min(256, Math.max(32, Math.ceil(Math.max(G * CS, HD) / 32) * 32));
}
