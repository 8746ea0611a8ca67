/**
 * The small layers: Linear (PyTorch [out, in] weight), RMSNorm, MLPBlock.
 *   const norm = new RMSNorm({config, name: 'model.final_norm'});
 *   const y = norm.apply(x) as tf.Tensor;
 */
import * as tf from '@tensorflow/tfjs';
import {geluTanh} from '../ops/activations';
import {linear} from '../ops/linear';
import {rmsNorm} from '../ops/norm';
import {GriffinLayer, GriffinLayerArgs, Kwargs, LayerVariable} from './base';
import {CompactParameter} from './compact';

export interface LinearArgs extends GriffinLayerArgs {
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
  /** Std of the weight's initial values; default 1/sqrt(inFeatures). */
  initStd?: number;
}

/** Something added to a Linear's output, computed from its input: LoRA (layers/lora.ts). */
export interface LinearAdapter {
  apply(x: tf.Tensor, y: tf.Tensor): tf.Tensor;
}

/** y = x W^T + b. x: [..., in] -> [..., out]. */
export class Linear extends GriffinLayer {
  static className = 'GriffinLinear';
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly useBias: boolean;
  private readonly initStd: number;
  weight!: LayerVariable;
  bias: LayerVariable | null = null;
  /** Kept out of the layer's weights, so checkpoints and the HF names stay those of the base model. */
  adapter: LinearAdapter | null = null;

  constructor(args: LinearArgs) {
    super(args);
    this.inFeatures = args.inFeatures;
    this.outFeatures = args.outFeatures;
    this.useBias = args.bias;
    this.initStd = args.initStd ?? 1 / Math.sqrt(args.inFeatures);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    this.weight = this.param('weight', [this.outFeatures, this.inFeatures], this.initStd, 0, true);
    if (this.useBias) this.bias = this.param('bias', [this.outFeatures]);
    super.build(inputShape);
  }

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return [...s.slice(0, -1), this.outFeatures];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const adapter = this.adapter;
    if (adapter == null) return this.project(x);
    return tf.tidy(() => adapter.apply(x, this.project(x)));
  }

  /** x W^T + b, with the weight as it is held (float32, or packed: layers/compact.ts). */
  private project(x: tf.Tensor): tf.Tensor {
    const w = this.weight;
    if (!(w instanceof CompactParameter)) return linear(x, w.read(), this.bias?.read());
    return tf.tidy(() => {
      let y = w.matMulT(tf.reshape(x, [-1, this.inFeatures]));
      if (this.bias != null) y = tf.add(y, this.bias.read());
      return tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), inFeatures: this.inFeatures, outFeatures: this.outFeatures, bias: this.useBias};
  }
}
tf.serialization.registerClass(Linear);

export interface RMSNormArgs extends GriffinLayerArgs {
  /** Normalised width; default hidden_size. */
  dim?: number;
}

/** x * rsqrt(mean(x^2) + eps) * (1 + weight). x: [..., d] -> [..., d]. */
export class RMSNorm extends GriffinLayer {
  static className = 'GriffinRMSNorm';
  readonly dim: number;
  weight!: LayerVariable;

  constructor(args: RMSNormArgs) {
    super(args);
    this.dim = args.dim ?? this.cfg.hidden_size;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    this.weight = this.param('weight', [this.dim]);
    super.build(inputShape);
  }

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return rmsNorm(x, this.weight.read(), this.cfg.rms_norm_eps);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), dim: this.dim};
  }
}
tf.serialization.registerClass(RMSNorm);

/** down(gelu(gate(x)) * up(x)), gate and up of width intermediate_size / 2. x: [b, t, d] -> [b, t, d]. */
export class MLPBlock extends GriffinLayer {
  static className = 'GriffinMLPBlock';
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;

  constructor(args: GriffinLayerArgs) {
    super(args);
    const c = this.cfg,
      m = c.intermediate_size / 2;
    const sub = (inF: number, outF: number, std?: number) =>
      new Linear({config: c, init: this.init, inFeatures: inF, outFeatures: outF, bias: true, initStd: std});
    this.gate_proj = this.child(sub(c.hidden_size, m), 'gate_proj');
    this.up_proj = this.child(sub(c.hidden_size, m), 'up_proj');
    this.down_proj = this.child(sub(m, c.hidden_size, Math.sqrt(c.final_w_init_variance_scale / m)), 'down_proj');
  }

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return tf.tidy(() => {
      const gate = geluTanh(this.gate_proj.call(x));
      return this.down_proj.call(tf.mul(gate, this.up_proj.call(x)));
    });
  }
}
tf.serialization.registerClass(MLPBlock);
