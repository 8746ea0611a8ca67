/**
 * The local attention temporal block.
 *   const block = new LocalAttentionBlock({config});
 *   const {y, state} = block.forwardWithState(x, info, block.initState(b));   // x: [b, t, d]; state: the last W keys
 *
 * Shape letters: b batch, t time, d hidden_size, H query heads, K key/value heads, hd head_dim,
 * W attention_window_size.
 */
import * as tf from '@tensorflow/tfjs';
import {applyRope, attendLocal} from '../ops/attention';
import {SequenceInfo} from '../ops/sequence';
import {GriffinLayer, GriffinLayerArgs, Kwargs, withInfo} from './base';
import {Linear} from './basic';

/** Decoding state of one attention layer: the keys and values of the last W positions. */
export interface AttentionState {
  /** [b, W, K, hd], RoPE already applied, oldest first. */
  k: tf.Tensor;
  v: tf.Tensor;
  /** [b, W] float32: 1 where the slot holds a real key of the row's current document. */
  valid: tf.Tensor;
}

export class LocalAttentionBlock extends GriffinLayer {
  static className = 'GriffinLocalAttentionBlock';
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;

  constructor(args: GriffinLayerArgs) {
    super(args);
    const c = this.cfg,
      d = c.hidden_size,
      hd = c.head_dim,
      init = this.init;
    const lin = (inF: number, outF: number, bias: boolean, std: number) =>
      new Linear({config: c, init, inFeatures: inF, outFeatures: outF, bias, initStd: std});
    const std = Math.sqrt(1 / d);
    this.q_proj = this.child(lin(d, c.num_attention_heads * hd, c.attention_bias, std), 'q_proj');
    this.k_proj = this.child(lin(d, c.num_key_value_heads * hd, c.attention_bias, std), 'k_proj');
    this.v_proj = this.child(lin(d, c.num_key_value_heads * hd, c.attention_bias, std), 'v_proj');
    this.o_proj = this.child(
      lin(c.num_attention_heads * hd, d, true, Math.sqrt(c.final_w_init_variance_scale / (c.num_attention_heads * hd))),
      'o_proj',
    );
  }
  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  initState(b: number): AttentionState {
    const {attention_window_size: W, num_key_value_heads: K, head_dim: hd} = this.cfg;
    return {k: tf.zeros([b, W, K, hd]), v: tf.zeros([b, W, K, hd]), valid: tf.zeros([b, W])};
  }

  /**
   * With `state`, the chunk's queries also see the cached keys, and the new state is returned;
   * without it, only the chunk is attended and the returned state is null unless `keepState`.
   */
  forwardWithState(
    x: tf.Tensor,
    info: SequenceInfo,
    state?: AttentionState | null,
    keepState = false,
  ): {y: tf.Tensor; state: AttentionState | null} {
    const c = this.cfg,
      H = c.num_attention_heads,
      K = c.num_key_value_heads,
      hd = c.head_dim,
      W = c.attention_window_size;
    const out = tf.tidy(() => {
      const [b, t] = x.shape;
      const rope = (z: tf.Tensor, n: number) =>
        applyRope(tf.reshape(z, [b, t, n, hd]), info.positions, c.rotary_dim, c.rope_theta);
      const q = rope(this.q_proj.call(x), H);
      const k = rope(this.k_proj.call(x), K);
      const v = tf.reshape(this.v_proj.call(x), [b, t, K, hd]);
      const chunkValid = info.tokenMask != null ? tf.reshape(info.tokenMask, [b, t]) : null;
      let keys = k,
        values = v,
        keyValid = chunkValid,
        keySeg = info.segment;
      if (state != null) {
        keys = tf.concat([state.k, k], 1);
        values = tf.concat([state.v, v], 1);
        keyValid = tf.concat([state.valid, chunkValid ?? tf.ones([b, t])], 1);
        // Cached keys belong to the document running before the chunk: segment 0.
        keySeg = info.segment != null ? tf.concat([tf.zeros([b, W], 'int32'), info.segment], 1) : null;
      }
      const s = keys.shape[1]!;
      const y = this.o_proj.call(attendLocal(q, keys, values, W, keyValid, info.segment, keySeg));
      if (state == null && !keepState) return {y};
      // The new state: the last W keys, valid only if real and of each row's last document.
      let valid = keyValid ?? tf.ones([b, s]);
      if (keySeg != null) {
        const lastSeg = tf.slice(info.segment!, [0, t - 1], [b, 1]);
        valid = tf.mul(valid, tf.cast(tf.equal(keySeg, lastSeg), 'float32'));
      }
      const take = (z: tf.Tensor, rest: number[]) => {
        if (s >= W) return tf.slice(z, [0, s - W, ...rest.map(() => 0)], [b, W, ...rest]);
        return tf.concat([tf.zeros([b, W - s, ...rest], z.dtype), z], 1);
      };
      return {y, k: take(keys, [K, hd]), v: take(values, [K, hd]), valid: take(valid, [])};
    }) as {y: tf.Tensor; k?: tf.Tensor; v?: tf.Tensor; valid?: tf.Tensor};
    return {y: out.y, state: out.k ? {k: out.k, v: out.v!, valid: out.valid!} : null};
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return withInfo(x, kwargs, (info) => this.forwardWithState(x, info).y);
  }
}
tf.serialization.registerClass(LocalAttentionBlock);
