/**
 * The causal depthwise convolution (ops/conv1d.ts) as one fused kernel, for inference on
 * backends that register one (webgpu: ops/causal_conv1d/webgpu.ts). The composite in
 * ops/conv1d.ts runs w slices, multiplies and adds plus the segment masks: ~30 GPU dispatches per
 * recurrent layer and decode step, against 2 here.
 *   const fused = causalConv1dFused(x, weight, bias, info);   // {y, state}, or null: run the composite
 *   causalConv1dConfig.enabled = false;                       // the composite always
 *
 * Kernel GriffinCausalConv1d: inputs {x [b,t,e], weight [e,1,w], bias [e], hist [b,w-1,e],
 * mask [b,t,1] float, segment [b,t] int32}; attrs {hasHist, hasMask, hasSegment} (an absent input
 * is passed as x and never read); outputs [y [b,t,e], state [b,w-1,e]], exactly as the composite
 * computes them. It has no gradient: under a gradient tape the composite runs, and tfjs
 * differentiates that.
 */
import * as tf from '@tensorflow/tfjs-core';
import {engine, getKernel} from '@tensorflow/tfjs-core';
import type {SequenceInfo} from '../sequence';

export const CAUSAL_CONV1D = 'GriffinCausalConv1d';

export interface CausalConv1dAttrs {
  hasHist: boolean;
  hasMask: boolean;
  hasSegment: boolean;
}

/** Process-wide switch (tests and benchmarks compare both paths). */
export const causalConv1dConfig = {enabled: true};

/**
 * {y, state} from the fused kernel, or null where it does not apply: no kernel on this backend,
 * a gradient being recorded, width 1, or an empty input.
 */
export function causalConv1dFused(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  info: SequenceInfo | null,
  prevState?: tf.Tensor | null,
): {y: tf.Tensor; state: tf.Tensor} | null {
  if (!causalConv1dConfig.enabled || getKernel(CAUSAL_CONV1D, tf.getBackend()) == null) return null;
  if ((engine() as unknown as {isTapeOn(): boolean}).isTapeOn()) return null;
  const w = weight.shape[2]!;
  if (w < 2 || x.size === 0 || x.dtype !== 'float32') return null;
  const mask = info?.tokenMask ?? null,
    segment = info?.segment ?? null;
  const attrs: CausalConv1dAttrs = {hasHist: prevState != null, hasMask: mask != null, hasSegment: segment != null};
  const [y, state] = engine().runKernel(
    CAUSAL_CONV1D,
    {x, weight, bias, hist: prevState ?? x, mask: mask ?? x, segment: segment ?? x},
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  return {y, state};
}
