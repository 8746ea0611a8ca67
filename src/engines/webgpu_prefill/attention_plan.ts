/// <reference types="@webgpu/types" />
/**
 * The attention part of the prefill plan: after the q/k/v matmuls, RoPE in place on the chunk's
 * q and k, the windowed causal attention over the decode engine's ring and the chunk, and the
 * chunk's keys and values written into the ring (the next chunk or decode step reads them there).
 *   import {buildPrefillPlan} from './plan';   // calls attentionScratch(ctx) once, attentionDispatches(ctx, li, st) per layer
 *
 * The kernels: shaders/rope.ts, attention.ts (flash style: tiles of keys shared by a workgroup's
 * queries and heads) and ring_write.ts; shaders/attention_simple.ts (one invocation per query
 * row and head) for head dims that are not multiples of 4.
 *
 * Shape letters: M token rows, H query heads, K key/value heads, hd head_dim, W window.
 */
import type {AttentionBuffers} from '../webgpu_decode';
import type {PrefillCtx, PrefillDispatch} from './context';
import {attnBindings, attnGrid, attnSource, attnTuning, type ChunkAttnSpec} from './shaders/attention';
import {
  type SimpleAttnSpec,
  simpleAttnGrid,
  simpleAttnSource,
  simpleRingWriteGrid,
  simpleRingWriteSource,
  simpleRopeGrid,
  simpleRopeSource,
} from './shaders/attention_simple';
import {ringWriteBindings, ringWriteGrid, ringWriteSource} from './shaders/ring_write';
import {ropeBindings, ropeGrid, ropeSource} from './shaders/rope';

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

/** Buffers by name, only those a source binds. */
function pick(names: string[], all: Record<string, GPUBuffer>): Record<string, GPUBuffer> {
  return Object.fromEntries(names.map((n) => [n, all[n]]));
}

/** [RoPE] [attention] [ring write] of layer li. */
export function attentionDispatches(ctx: PrefillCtx, li: number, st: AttentionBuffers): PrefillDispatch[] {
  const s = spec(ctx),
    buf = ctx.buf;
  if (s.HD % 4 === 0) {
    const cs: ChunkAttnSpec = {...s};
    const lim = ctx.host.limits;
    const tuning = attnTuning(cs, {
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
    });
    const all = {
      dims: buf.dims,
      rope: buf.rope,
      qkv: buf.qkv,
      pos: buf.pos,
      kr: st.k,
      vr: st.v,
      valid: st.valid,
      attn: buf.attn,
    };
    return [
      {
        name: `L${li}.rope`,
        code: ropeSource(cs),
        bindings: pick(ropeBindings(cs), all),
        grid: (M) => ropeGrid(M),
        bytes: 0,
      },
      {
        name: `L${li}.attn`,
        code: attnSource(cs, tuning),
        bindings: pick(attnBindings(cs), all),
        grid: (M, t) => attnGrid(cs, M, t, tuning),
        bytes: 0,
      },
      {
        name: `L${li}.ring`,
        code: ringWriteSource(cs),
        bindings: pick(ringWriteBindings(cs), all),
        grid: (M, t) => ringWriteGrid(cs, M, t),
        bytes: 0,
      },
    ];
  }
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
