/**
 * The Real-Gated Linear Recurrent Unit: gates, normalised input, then the scan.
 *   const H = config.num_attention_heads, e = config.lru_width, w = () => tf.randomNormal([H, e / H, e / H]);
 *   const p: RgLruParams = {recurrent_param: tf.zeros([e]), input_gate_weight: w(), recurrent_gate_weight: w(),
 *     input_gate_bias: tf.zeros([H, e / H]), recurrent_gate_bias: tf.zeros([H, e / H])};   // RGLRU's weights
 *   const {y, hLast} = rgLru(x, p, info, h0);   // x, y: [b, t, e]; h0 (optional), hLast: [b, e]
 *
 * x: [b, t, e], channels in H heads of e/H. params: recurrent_param [e], input_gate_weight and
 * recurrent_gate_weight [H, e/H, e/H], input_gate_bias and recurrent_gate_bias [H, e/H].
 */
import * as tf from '@tensorflow/tfjs-core';
import {sqrtBoundDerivative} from './activations';
import {rgLruScan} from './rg_lru_scan';
import {SequenceInfo} from './sequence';

export interface RgLruParams {
  recurrent_param: tf.Tensor;
  input_gate_weight: tf.Tensor;
  input_gate_bias: tf.Tensor;
  recurrent_gate_weight: tf.Tensor;
  recurrent_gate_bias: tf.Tensor;
}

/** x: [b, t, e] -> [b, t, e]; per head h: x_h [.., e/H] @ w[h] [e/H, e/H] + bias[h]. */
export function blockDiagonal(x: tf.Tensor, w: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, e] = x.shape;
    const [H, bw] = [w.shape[0]!, w.shape[1]!];
    const xh = tf.transpose(tf.reshape(x, [b * t, H, bw]), [1, 0, 2]); // [H, b*t, bw]
    const y = tf.add(tf.matMul(xh, w), tf.reshape(bias, [H, 1, bw])); // [H, b*t, bw]
    return tf.reshape(tf.transpose(y, [1, 0, 2]), [b, t, e]);
  });
}

export function rgLru(
  x: tf.Tensor,
  p: RgLruParams,
  info: SequenceInfo | null,
  h0?: tf.Tensor | null,
): {y: tf.Tensor; hLast: tf.Tensor} {
  return tf.tidy(() => {
    const gateX = tf.sigmoid(blockDiagonal(x, p.input_gate_weight, p.input_gate_bias));
    const gateA = tf.sigmoid(blockDiagonal(x, p.recurrent_gate_weight, p.recurrent_gate_bias));
    const logA = tf.mul(tf.mul(gateA, tf.softplus(p.recurrent_param)), -8);
    let a = tf.exp(logA);
    let mult = sqrtBoundDerivative(tf.sub(1, tf.exp(tf.mul(logA, 2))));
    let xn = tf.mul(x, gateX);
    if (info != null) {
      // A document start: no decay from the past, input not normalised.
      const keep = tf.sub(1, info.reset);
      a = tf.mul(a, keep);
      mult = tf.add(info.reset, tf.mul(keep, mult));
      if (info.tokenMask != null) {
        // Padding leaves the state untouched: a = 1, no input.
        a = tf.add(tf.mul(a, info.tokenMask), tf.sub(1, info.tokenMask));
        mult = tf.mul(mult, info.tokenMask);
      }
    }
    xn = tf.mul(xn, mult);
    // The recurrence runs in float32 whatever the activations' dtype (the kernels keep it so).
    const {h, hLast} = rgLruScan(a, xn, h0 ?? undefined);
    return {y: h, hLast};
  });
}
