/// <reference types="@webgpu/types" />
/**
 * What the prefill plan's parts share: a planned dispatch (source, buffers by binding name, grid
 * as a function of the chunk's size), the host the plan allocates through, the shared buffers and
 * the context each part's function works from (plan.ts, attention_plan.ts).
 *   import type {PrefillDispatch} from './context';
 *   const d: PrefillDispatch = {name: 'L0.conv', code: '', bindings: {}, grid: (M) => [Math.ceil(M / 64), 1, 1], bytes: 0};
 *
 * Shape letters: M token rows of a chunk (b t), t steps per row, d hidden_size, e lru_width,
 * m intermediate_size / 2, H query heads, K key/value heads, hd head_dim.
 */
import type * as tf from '@tensorflow/tfjs';
import type {DecodeModelView, PrefillTarget} from '../webgpu_decode';

/** Workgroups of a dispatch for a chunk of M token rows, t steps per row. */
export type GridFn = (M: number, t: number) => [number, number, number];

/** One dispatch of a chunk. */
export interface PrefillDispatch {
  /** 'embed', 'L3.scan', ...: pipeline label and profiling name (the kind after the dot). */
  readonly name: string;
  readonly code: string;
  /** Buffers by the WGSL variable names of the source's bindings (every one bound, none extra). */
  readonly bindings: Readonly<Partial<Record<string, GPUBuffer>>>;
  readonly grid: GridFn;
  /** Bytes of weights it must read (profiling); 0 when small. */
  readonly bytes: number;
  /**
   * Another source for chunks of M rows (a matmul's smaller tiles when few rows would leave the GPU
   * idle, or its split-K), or null for this one; the same bindings unless it names its own, and
   * possibly a second dispatch after it (split-K's sum). The engine makes its pipelines on first use.
   */
  readonly variant?: (M: number) => PrefillVariant | null;
}

/** One dispatch of a variant: its source, grid, and bindings (default: the planned dispatch's). */
export interface PrefillPass {
  readonly code: string;
  readonly grid: GridFn;
  readonly bindings?: Readonly<Partial<Record<string, GPUBuffer>>>;
}

/** A dispatch's variant for some chunk lengths: `key` names it among the dispatch's variants. */
export interface PrefillVariant extends PrefillPass {
  readonly key: string;
  /** A second dispatch right after it (split-K: the partial sums' sum and the epilogue). */
  readonly after?: PrefillPass;
}

/** What the plan allocates and binds through (the engine's). */
export interface PrefillHost {
  readonly limits: GPUSupportedLimits;
  /** A new buffer the engine owns, for `floats` float32 (at least 16 bytes, a multiple of 16). */
  own(floats: number): GPUBuffer;
  /** A weight tensor's buffer. */
  weight(get: () => tf.Tensor): GPUBuffer;
  /** Receives the copies that pack small vectors; submitted once the plan is built. */
  readonly encoder: GPUCommandEncoder;
  /** The subgroup size kernels may assume (shaders/matmul.ts matmulSubgroupSize), 0 or absent: none. */
  readonly subgroupSize?: number;
}

/** The buffers every layer's dispatches share. */
export interface PrefillShared {
  dims: GPUBuffer;
  ids: GPUBuffer;
  pos: GPUBuffer;
  rope: GPUBuffer;
  x: GPUBuffer;
  uy: GPUBuffer;
  cv: GPUBuffer;
  gates: GPUBuffer;
  o: GPUBuffer;
  qkv: GPUBuffer;
  attn: GPUBuffer;
  hid: GPUBuffer;
  /** The chunked scan's scratch (shaders/scan_chunked.ts). */
  sc: GPUBuffer;
  /** Scratch of the attention kernels (attention_plan.ts), by binding name. */
  scratch: Record<string, GPUBuffer>;
  /**
   * Split-K's partial sums (shaders/matmul.ts), shared by every matmul: made once the plan is
   * built, `partFloats` floats (the most any matmul asked for while planning, within a budget).
   */
  part: GPUBuffer | null;
  partFloats: number;
}

/** What the per-part functions work from. */
export interface PrefillCtx {
  readonly view: DecodeModelView;
  readonly host: PrefillHost;
  readonly B: number;
  /** Most steps per row in a chunk. */
  readonly capacity: number;
  readonly buf: PrefillShared;
  readonly target: PrefillTarget;
}
