/**
 * The RoPE kernel: RoPE on the query and the new key (the first ROT dims of each head, halves
 * rotated), the key and value into the attention ring's slot, and the slots' validity (a row at
 * position 0 starts a document and clears its slots). One workgroup per batch row.
 *   import {stepLayout} from './common';
 *   const {num_attention_heads: H, num_key_value_heads: K, head_dim: HD, rotary_dim: ROT} = config;
 *   const S = config.attention_window_size + 1;
 *   const code = ropeSource({B: 1, H, K, HD, ROT, S, step: stepLayout(1, ROT / 2), CS: 16, T: 64});
 *
 * Shape letters: B batch rows, H query heads, K key/value heads, HD head dim, ROT rotary dims,
 * S ring slots, T invocations per workgroup.
 */
import {AttnSpec} from './common';

export type RopeBinding = 'qkv' | 'step' | 'qr' | 'kr' | 'vr' | 'valid';

/** Bindings: qkv [B, (H+2K) HD], step, qr [B, H HD], kr / vr [B, S, K, HD], valid [B, S]. */
export function ropeSource(s: AttnSpec): string {
  const {H, K, HD, ROT, S, T} = s;
  const half = ROT / 2,
    QKV = (H + 2 * K) * HD;
  const rot = (src: string, base: string) => `
      var val : f32;
      if (j < ${half}u) {
        val = ${src}[${base} + j] * cs - ${src}[${base} + j + ${half}u] * sn;
      } else if (j < ${ROT}u) {
        val = ${src}[${base} + j] * cs + ${src}[${base} + j - ${half}u] * sn;
      } else {
        val = ${src}[${base} + j];
      }`;
  return `
@group(0) @binding(0) var<storage, read> qkv : array<f32>;
@group(0) @binding(1) var<storage, read> step : array<u32>;
@group(0) @binding(2) var<storage, read_write> qr : array<f32>;
@group(0) @binding(3) var<storage, read_write> kr : array<f32>;
@group(0) @binding(4) var<storage, read_write> vr : array<f32>;
@group(0) @binding(5) var<storage, read_write> valid : array<f32>;

fn cosSin(b : u32, j : u32) -> vec2<f32> {
  var jj = j;
  if (j >= ${half}u) { jj = j - ${half}u; }
  if (j >= ${ROT}u) { return vec2<f32>(1.0, 0.0); }
  let i = b * ${s.step.half}u + jj;
  return vec2<f32>(bitcast<f32>(step[${s.step.cos}u + i]), bitcast<f32>(step[${s.step.sin}u + i]));
}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let b = wid.x;
  let pos = step[${s.step.pos}u + b];
  let slot = step[${s.step.slot}u];
  for (var idx = t; idx < ${(H + K) * HD}u; idx = idx + ${T}u) {
    let hh = idx / ${HD}u;
    let j = idx % ${HD}u;
    let c = cosSin(b, j);
    let cs = c.x;
    let sn = c.y;
    let base = b * ${QKV}u + hh * ${HD}u;
    ${rot('qkv', 'base')}
    if (hh < ${H}u) {
      qr[b * ${H * HD}u + idx] = val;
    } else {
      let kh = hh - ${H}u;
      let dst = ((b * ${S}u + slot) * ${K}u + kh) * ${HD}u + j;
      kr[dst] = val;
      vr[dst] = qkv[base + ${K * HD}u + j];
    }
  }
  for (var sl = t; sl < ${S}u; sl = sl + ${T}u) {
    if (sl == slot) {
      valid[b * ${S}u + sl] = 1.0;
    } else if (pos == 0u) {
      valid[b * ${S}u + sl] = 0.0;
    }
  }
}`;
}
