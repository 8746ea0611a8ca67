/// <reference types="@webgpu/types" />
/**
 * The attention part of the prefill plan: after the q/k/v matmuls, RoPE in place on the chunk's
 * q and k, the windowed causal attention over the decode engine's ring and the chunk, and the
 * chunk's keys and values written into the ring (the next chunk or decode step reads them there).
 *   import {buildPrefillPlan} from './plan';   // calls attentionScratch(ctx) once, attentionDispatches(ctx, li, st) per layer
 *
 * The kernels: shaders/attention_simple.ts (one invocation per query row and head).
 *
 * Shape letters: M token rows, H query heads, K key/value heads, hd head_dim, W window.
 */
import type {AttentionBuffers} from '../webgpu_decode';
import type {PrefillCtx, PrefillDispatch} from './context';
import {
  type SimpleAttnSpec,
  simpleAttnGrid,
  simpleAttnSource,
  simpleRingWriteGrid,
  simpleRingWriteSource,
  simpleRopeGrid,
  simpleRopeSource,
} from './shaders/attention_simple';

function spec(ctx: PrefillCtx): SimpleAttnSpec {
  const c = ctx.view.config;
  return {
    H: c.num_attention_heads,
    K: c.num_key_value_heads,
    HD: c.head_dim,
    ROT: c.rotary_dim,
    W: c.attention_window_size,
  };
}

/** Buffers the attention kernels share across layers, by binding name (none for these kernels). */
export function attentionScratch(_ctx: PrefillCtx): Record<string, GPUBuffer> {
  return {};
}

/** [RoPE] [attention] [ring write] of layer li. */
export function attentionDispatches(ctx: PrefillCtx, li: number, st: AttentionBuffers): PrefillDispatch[] {
  const s = spec(ctx),
    buf = ctx.buf;
  const maxX = ctx.host.limits.maxComputeWorkgroupsPerDimension;
  const ring = {kr: st.k, vr: st.v, valid: st.valid};
  return [
    {
      name: `L${li}.rope`,
      code: simpleRopeSource(s),
      bindings: {dims: buf.dims, rope: buf.rope, qkv: buf.qkv},
      grid: (M) => simpleRopeGrid(s, M, maxX),
      bytes: 0,
    },
    {
      name: `L${li}.attn`,
      code: simpleAttnSource(s),
      bindings: {dims: buf.dims, pos: buf.pos, qkv: buf.qkv, ...ring, attn: buf.attn},
      grid: (M) => simpleAttnGrid(s, M, maxX),
      bytes: 0,
    },
    {
      name: `L${li}.ring`,
      code: simpleRingWriteSource(s),
      bindings: {dims: buf.dims, pos: buf.pos, qkv: buf.qkv, ...ring},
      grid: (M, t) => simpleRingWriteGrid(s, M / t, maxX),
      bytes: 0,
    },
  ];
}
