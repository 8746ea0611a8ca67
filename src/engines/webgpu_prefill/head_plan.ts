/// <reference types="@webgpu/types" />
/**
 * The prefill plan's head over every token row (forward's all-positions logits): the final
 * RMSNorm fused into the tiled matmul against the tied embedding (or the untied LM head), one
 * dispatch per vocabulary piece, the soft cap as its epilogue, for up to S rows of the chunk's
 * x at a time (a slice of x bound at row offset a, the row count from a dims slot of its own),
 * into a scratch [S, V] that the engine copies into the output tensor after each slice.
 *   import {buildPrefillPlan} from './plan';   // the engine plans with it, then, on the first runAll:
 *   const head = (plan: ReturnType<typeof buildPrefillPlan>) => buildFullHead(plan.ctx, 256);   // one dispatch per piece, 256 rows
 *
 * S is a multiple of 64, so that a slice's byte offset in x (a d 4) is a multiple of 256
 * (WebGPU's storage binding offset alignment) whatever d is.
 *
 * Shape letters: S rows per slice, V vocab_size, d hidden_size.
 */
import type {PrefillCtx, PrefillDispatch} from './context';
import {matmul, matrix} from './plan';

/** Bytes between the dims slots of consecutive slices (WebGPU's largest storage offset alignment). */
export const HEAD_DIMS_STRIDE = 256;

export interface FullHead {
  /** One matmul per vocabulary piece; bindings dims, x, g, w0.., out (dims and x rebound per slice). */
  readonly dispatches: PrefillDispatch[];
  /** Rows per slice (S). */
  readonly rows: number;
  /** One dims slot per slice of a chunk, HEAD_DIMS_STRIDE bytes apart (word 0: the slice's rows). */
  readonly dims: GPUBuffer;
  /** Slices a chunk of the engine's capacity may need (dims slots). */
  readonly slices: number;
  /** The logits of a slice [S, V]. */
  readonly out: GPUBuffer;
}

/** Rows per slice for `bytes` of scratch at most: a multiple of 64 (at least 64), no more than `most` needs. */
export function fullHeadRows(V: number, bytes: number, most: number): number {
  const fit = Math.max(64, Math.floor(bytes / (4 * V) / 64) * 64);
  return Math.min(fit, Math.ceil(most / 64) * 64);
}

/** The head dispatches and their buffers for slices of `rows` token rows (a multiple of 64). */
export function buildFullHead(ctx: PrefillCtx, rows: number): FullHead {
  if (!Number.isInteger(rows) || rows < 64 || rows % 64 !== 0) {
    throw new Error(`fused prefill head: ${rows} rows per slice (a multiple of 64)`);
  }
  const {host, view} = ctx,
    c = view.config;
  const V = c.vocab_size,
    d = c.hidden_size;
  const most = Math.min(host.limits.maxStorageBufferBindingSize, host.limits.maxBufferSize);
  if (rows * V * 4 > most) throw new Error(`fused prefill head: ${rows} rows of ${V} logits exceed one binding`);
  const slices = Math.ceil((ctx.B * ctx.capacity) / rows);
  const dims = host.own((slices * HEAD_DIMS_STRIDE) / 4);
  const out = host.own(rows * V);
  const g = host.weight(() => view.finalNorm.weight.read());
  const dispatches = (view.lmHead ?? view.embed).matrix.pieces.flatMap((p) =>
    matmul(
      {...ctx, buf: {...ctx.buf, dims}},
      'head',
      {
        N: p.rows,
        K: d,
        norm: {eps: c.rms_norm_eps},
        epilogue: 'softcap',
        cap: c.logits_soft_cap,
        outStride: V,
        outOffset: p.start,
      },
      [matrix(ctx, p.variable)],
      null,
      {x: ctx.buf.x, g, out},
    ),
  );
  return {dispatches, rows, dims, slices, out};
}
