/**
 * The attention combine kernel: the softmax merge of the partial kernel's chunks (per row and
 * query head: rescale each chunk's sum and P V by exp(chunk max - max), add, divide).
 *   import {stepLayout} from './common';
 *   const {num_attention_heads: H, num_key_value_heads: K, head_dim: HD, rotary_dim: ROT} = config;
 *   const spec = {B: 1, H, K, HD, ROT, S: config.attention_window_size + 1, step: stepLayout(1, ROT / 2), CS: 16};
 *   const code = attnCombineSource({...spec, T: attnCombineThreads(HD)});   // grid [H, B, 1]
 *
 * Shape letters: B batch rows, H query heads, HD head dim, NC chunks, T invocations per workgroup.
 */
import {AttnSpec, attnChunks, NEG_WGSL} from './common';

export type AttnCombineBinding = 'part' | 'attn';

/** Bindings: part, attn [B, H HD]. Grid (H, B). */
export function attnCombineSource(s: AttnSpec): string {
  const {H, HD} = s;
  const NC = attnChunks(s),
    T = Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32));
  return `
@group(0) @binding(0) var<storage, read> part : array<f32>;
@group(0) @binding(1) var<storage, read_write> attn : array<f32>;

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let h = wid.x;
  let b = wid.y;
  let base = (b * ${H}u + h) * ${NC}u;
  var m = ${NEG_WGSL};
  for (var c = 0u; c < ${NC}u; c = c + 1u) { m = max(m, part[(base + c) * ${HD + 2}u + ${HD}u]); }
  var l = 0.0;
  for (var c = 0u; c < ${NC}u; c = c + 1u) {
    let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
    if (mc > -1.0e38) { l = l + exp(mc - m) * part[(base + c) * ${HD + 2}u + ${HD + 1}u]; }
  }
  for (var j = t; j < ${HD}u; j = j + ${T}u) {
    var o = 0.0;
    for (var c = 0u; c < ${NC}u; c = c + 1u) {
      let mc = part[(base + c) * ${HD + 2}u + ${HD}u];
      if (mc > -1.0e38) { o = o + exp(mc - m) * part[(base + c) * ${HD + 2}u + j]; }
    }
    attn[(b * ${H}u + h) * ${HD}u + j] = o / l;
  }
}`;
}

export function attnCombineThreads(HD: number): number {
  return Math.min(256, Math.max(32, Math.ceil(HD / 32) * 32));
}
