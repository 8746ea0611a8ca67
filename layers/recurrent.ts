/**
 * The recurrent temporal block: Conv1D, RGLRU and RecurrentBlock.
 *   const block = new RecurrentBlock({config, init: 'zeros'});
 *   const {y, state} = block.forwardWithState(x, info, block.initState(b));   // x: [b, t, d]; state: {conv, rnn}
 *
 * Shape letters: b batch, t time, d hidden_size, e lru_width, H heads, w conv1d_width.
 */
import * as tf from '@tensorflow/tfjs';
import {geluTanh} from '../ops/activations';
import {causalConv1d} from '../ops/conv1d';
import {rgLru} from '../ops/rg_lru';
import {SequenceInfo} from '../ops/sequence';
import {GriffinLayer, GriffinLayerArgs, Kwargs, LayerVariable, withInfo} from './base';
import {Linear} from './basic';

/** Decoding state of one recurrent layer: constant size whatever the sequence length. */
export interface RecurrentState {
  /** [b, w-1, e]: the convolution's last inputs. */
  conv: tf.Tensor;
  /** [b, e] float32: the RG-LRU state. */
  rnn: tf.Tensor;
}

/** Causal depthwise convolution, weight [e, 1, w] as in PyTorch. x: [b, t, e] -> [b, t, e]. */
export class Conv1D extends GriffinLayer {
  static className = 'GriffinConv1D';
  weight!: LayerVariable;
  bias!: LayerVariable;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const {lru_width: e, conv1d_width: w} = this.cfg;
    this.weight = this.param('weight', [e, 1, w], 1 / Math.sqrt(w));
    this.bias = this.param('bias', [e]);
    super.build(inputShape);
  }
  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  forwardWithState(x: tf.Tensor, info: SequenceInfo | null, state?: tf.Tensor | null) {
    return causalConv1d(x, this.weight.read(), this.bias.read(), info, state);
  }
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return withInfo(x, kwargs, (info) => tf.tidy(() => this.forwardWithState(x, info).y));
  }
}
tf.serialization.registerClass(Conv1D);

/** Real-Gated Linear Recurrent Unit. x: [b, t, e] -> [b, t, e]. */
export class RGLRU extends GriffinLayer {
  static className = 'GriffinRGLRU';
  recurrent_param!: LayerVariable;
  input_gate_weight!: LayerVariable;
  input_gate_bias!: LayerVariable;
  recurrent_gate_weight!: LayerVariable;
  recurrent_gate_bias!: LayerVariable;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const e = this.cfg.lru_width,
      H = this.cfg.num_attention_heads,
      bw = e / H;
    const std = Math.sqrt(this.cfg.w_init_variance_scale / bw);
    // Decays a = exp(-8 softplus(p)) (gate fully open) start uniform in [0.9, 0.999].
    this.recurrent_param = this.paramFrom('recurrent_param', [e], () =>
      tf.tidy(() => {
        const a = tf.randomUniform([e], 0.9, 0.999);
        const sp = tf.div(tf.neg(tf.log(a)), 8); // softplus(p)
        return tf.log(tf.sub(tf.exp(sp), 1)); // its inverse
      }),
    );
    this.input_gate_weight = this.param('input_gate_weight', [H, bw, bw], std);
    this.input_gate_bias = this.param('input_gate_bias', [H, bw]);
    this.recurrent_gate_weight = this.param('recurrent_gate_weight', [H, bw, bw], std);
    this.recurrent_gate_bias = this.param('recurrent_gate_bias', [H, bw]);
    super.build(inputShape);
  }
  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  forwardWithState(x: tf.Tensor, info: SequenceInfo | null, h0?: tf.Tensor | null) {
    return rgLru(
      x,
      {
        recurrent_param: this.recurrent_param.read(),
        input_gate_weight: this.input_gate_weight.read(),
        input_gate_bias: this.input_gate_bias.read(),
        recurrent_gate_weight: this.recurrent_gate_weight.read(),
        recurrent_gate_bias: this.recurrent_gate_bias.read(),
      },
      info,
      h0,
    );
  }
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return withInfo(x, kwargs, (info) => tf.tidy(() => this.forwardWithState(x, info).y));
  }
}
tf.serialization.registerClass(RGLRU);

/**
 * linear_out(rg_lru(conv_1d(linear_x(x))) * gelu(linear_y(x))). x: [b, t, d] -> [b, t, d].
 */
export class RecurrentBlock extends GriffinLayer {
  static className = 'GriffinRecurrentBlock';
  readonly linear_y: Linear;
  readonly linear_x: Linear;
  readonly linear_out: Linear;
  readonly conv_1d: Conv1D;
  readonly rg_lru: RGLRU;

  constructor(args: GriffinLayerArgs) {
    super(args);
    const c = this.cfg,
      d = c.hidden_size,
      e = c.lru_width,
      init = this.init;
    const lin = (inF: number, outF: number, std: number) =>
      new Linear({config: c, init, inFeatures: inF, outFeatures: outF, bias: true, initStd: std});
    this.linear_y = this.child(lin(d, e, Math.sqrt(c.w_init_variance_scale / d)), 'linear_y');
    this.linear_x = this.child(lin(d, e, Math.sqrt(c.w_init_variance_scale / d)), 'linear_x');
    this.linear_out = this.child(lin(e, d, Math.sqrt(c.final_w_init_variance_scale / e)), 'linear_out');
    this.conv_1d = this.child(new Conv1D({config: c, init}), 'conv_1d');
    this.rg_lru = this.child(new RGLRU({config: c, init}), 'rg_lru');
  }
  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  /** An empty state for a batch of b rows. */
  initState(b: number): RecurrentState {
    const {lru_width: e, conv1d_width: w} = this.cfg;
    return {conv: tf.zeros([b, w - 1, e]), rnn: tf.zeros([b, e])};
  }

  forwardWithState(
    x: tf.Tensor,
    info: SequenceInfo | null,
    state?: RecurrentState | null,
  ): {y: tf.Tensor; state: RecurrentState} {
    const out = tf.tidy(() => {
      const y = geluTanh(this.linear_y.call(x));
      const u = this.linear_x.call(x);
      const conv = this.conv_1d.forwardWithState(u, info, state?.conv);
      const rnn = this.rg_lru.forwardWithState(conv.y, info, state?.rnn);
      return {y: this.linear_out.call(tf.mul(rnn.y, y)), conv: conv.state, rnn: rnn.hLast};
    });
    return {y: out.y, state: {conv: out.conv, rnn: out.rnn}};
  }
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return withInfo(x, kwargs, (info) => {
      const {y, state} = this.forwardWithState(x, info);
      tf.dispose([state.conv, state.rnn]);
      return y;
    });
  }
}
tf.serialization.registerClass(RecurrentBlock);
