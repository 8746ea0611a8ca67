/**
 * Local (sliding-window) multi-query attention with partial RoPE.
 *   const qr = applyRope(q, info.positions, config.rotary_dim, config.rope_theta);   // k alike
 *   const bias = attentionBias(b, t, t, windowSize, null, info.segment, info.segment);   // [b, 1, t, s]
 *   const out = attend(qr, k, v, bias);   // [b, t, H * hd], before o_proj
 *   const same = attendLocal(qr, k, v, windowSize, null, info.segment, info.segment);   // in blocks past 2 windows
 *   setAttentionBlocks(false);   // benchmarks only: attendLocal falls back to the [t, s] scores
 *
 * q: [b, t, H, hd]; k, v: [b, s, K, hd] (s = t, or cache + t when decoding); query head h uses
 * key/value head floor(h / (H/K)). A query at i sees keys j with i - W <= j <= i, in the same
 * document, not padding.
 *
 * attendLocal computes long sequences in blocks of queries, each against only the keys its
 * window reaches, so that the scores (and what the backward pass keeps of them) grow with
 * t * (block + W) instead of t * s.
 */
import * as tf from '@tensorflow/tfjs-core';

const MASKED = -1e9; // finite, so that a row with nothing visible (a padded query) stays NaN-free

/** Rotates the first `rotaryDim` channels of each head. x: [b, t, n, hd]; positions: [b, t]. */
export function applyRope(x: tf.Tensor, positions: tf.Tensor, rotaryDim: number, theta: number): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, n, hd] = x.shape;
    const half = rotaryDim / 2;
    const invFreq = tf.tensor1d(Array.from({length: half}, (_, j) => 1 / theta ** ((2 * j) / rotaryDim)));
    const angle = tf.mul(tf.reshape(tf.cast(positions, 'float32'), [b, t, 1, 1]), tf.reshape(invFreq, [1, 1, 1, half]));
    const cos = tf.cos(angle),
      sin = tf.sin(angle);
    const p1 = tf.slice(x, [0, 0, 0, 0], [b, t, n, half]);
    const p2 = tf.slice(x, [0, 0, 0, half], [b, t, n, half]);
    const parts = [tf.sub(tf.mul(p1, cos), tf.mul(p2, sin)), tf.add(tf.mul(p2, cos), tf.mul(p1, sin))];
    if (rotaryDim < hd) parts.push(tf.slice(x, [0, 0, 0, rotaryDim], [b, t, n, hd - rotaryDim]));
    return tf.concat(parts, 3);
  });
}

/**
 * Additive mask [b, 1, t, s] for queries at chunk steps 0..t-1 against keys at steps
 * (t - s)..(t - 1) (keys before the chunk come from a cache, counted from its end).
 * keyValid: [b, s] (1 = a real key), querySeg/keySeg: [b, t] / [b, s] document indices.
 */
export function attentionBias(
  b: number,
  t: number,
  s: number,
  windowSize: number,
  keyValid: tf.Tensor | null,
  querySeg: tf.Tensor | null,
  keySeg: tf.Tensor | null,
): tf.Tensor {
  return tf.tidy(() => {
    const band = new Float32Array(t * s);
    const off = s - t; // key index of query 0
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < s; j++) {
        const d = i + off - j;
        band[i * s + j] = d >= 0 && d <= windowSize ? 1 : 0;
      }
    }
    let allowed: tf.Tensor = tf.tensor4d(band, [1, 1, t, s]);
    if (keyValid != null) allowed = tf.mul(allowed, tf.reshape(tf.cast(keyValid, 'float32'), [b, 1, 1, s]));
    if (querySeg != null && keySeg != null) {
      const same = tf.equal(tf.reshape(querySeg, [b, 1, t, 1]), tf.reshape(keySeg, [b, 1, 1, s]));
      allowed = tf.mul(allowed, tf.cast(same, 'float32'));
    }
    return tf.mul(tf.sub(1, allowed), MASKED);
  });
}

/** q: [b, t, H, hd], k/v: [b, s, K, hd], bias: [b or 1, 1, t, s] -> [b, t, H*hd]. */
export function attend(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, H, hd] = q.shape;
    const [, s, K] = k.shape;
    const G = H / K;
    // Group the G query heads sharing a key head along the query axis: one matmul per K head.
    const qg = tf.reshape(tf.transpose(q, [0, 2, 1, 3]), [b, K, G * t, hd]);
    const kt = tf.transpose(k, [0, 2, 1, 3]); // [b, K, s, hd]
    const vt = tf.transpose(v, [0, 2, 1, 3]);
    let scores = tf.mul(tf.matMul(qg, kt, false, true), 1 / Math.sqrt(hd)); // [b, K, G*t, s]
    scores = tf.add(tf.reshape(scores, [b, H, t, s]), bias);
    const probs = tf.softmax(scores, -1);
    const out = tf.matMul(tf.reshape(probs, [b, K, G * t, s]), vt); // [b, K, G*t, hd]
    return tf.reshape(tf.transpose(tf.reshape(out, [b, H, t, hd]), [0, 2, 1, 3]), [b, t, H * hd]);
  });
}

let blocksOn = true;

/**
 * Turns the blocks of attendLocal off (or back on), so that a benchmark can measure the memory of
 * the plain [t, s] scores it replaces; the results are the same either way.
 */
export function setAttentionBlocks(on: boolean): void {
  blocksOn = on;
}

/** Queries per block of attendLocal: a window's worth, at least 128 (fewer, larger matmuls). */
export function queryBlock(windowSize: number): number {
  return Math.max(windowSize, 128);
}

/**
 * attend(q, k, v, attentionBias(...)) with the same masks, computed in blocks of queries when the
 * sequence spans more than two blocks: block [q0, q0 + B) attends keys [q0 + off - W, q0 + off + B)
 * (off = s - t) only. keyValid: [b, s]; querySeg / keySeg: [b, t] / [b, s]. -> [b, t, H*hd].
 */
export function attendLocal(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  windowSize: number,
  keyValid: tf.Tensor | null,
  querySeg: tf.Tensor | null,
  keySeg: tf.Tensor | null,
): tf.Tensor {
  const [b, t] = q.shape;
  const s = k.shape[1]!;
  const B = queryBlock(windowSize);
  if (!blocksOn || t < 2 * B || s <= B + windowSize) {
    return tf.tidy(() => attend(q, k, v, attentionBias(b, t, s, windowSize, keyValid, querySeg, keySeg)));
  }
  const off = s - t;
  // An outer tidy, not dispose(): a tape recording gradients keeps the blocks concat saved.
  return tf.tidy(() => {
    const blocks: tf.Tensor[] = [];
    for (let q0 = 0; q0 < t; q0 += B) {
      const n = Math.min(B, t - q0);
      // Keys this block's queries can reach: from the first query's window start to the last query.
      const k0 = Math.max(0, q0 + off - windowSize),
        k1 = q0 + off + n;
      const m = k1 - k0;
      blocks.push(
        tf.tidy(() => {
          const qb = tf.slice(q, [0, q0], [b, n]);
          const kb = tf.slice(k, [0, k0], [b, m]);
          const vb = tf.slice(v, [0, k0], [b, m]);
          const valid = keyValid != null ? tf.slice(keyValid, [0, k0], [b, m]) : null;
          const qs = querySeg != null ? tf.slice(querySeg, [0, q0], [b, n]) : null;
          const ks = keySeg != null ? tf.slice(keySeg, [0, k0], [b, m]) : null;
          // attentionBias takes the block's last query to sit at its last key (m - n = its offset).
          return attend(qb, kb, vb, attentionBias(b, n, m, windowSize, valid, qs, ks));
        }),
      );
    }
    return tf.concat(blocks, 1);
  });
}
