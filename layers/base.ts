/**
 * The base of every Griffin layer: a tfjs Layer that may own sub-layers, named after the
 * checkpoint so that a parameter's path inside its top-level layer is its HF name.
 *   class Scale extends GriffinLayer {
 *     weight!: LayerVariable;
 *     override build(s: tf.Shape | tf.Shape[]): void {
 *       this.weight = this.param('weight', [this.cfg.hidden_size]);   // named prefix + 'weight'
 *       super.build(s);
 *     }
 *   }
 *   class Pair extends GriffinLayer { left = this.child(new Scale({config}), 'left'); }
 *   const pair = new Pair({config, name: 'pair'});
 *   pair.apply(x);   pair.namedParams();   // Map { 'left.weight' => LayerVariable }
 *
 * Sub-layers are built by their parent's build(), inside the tfjs name scope of the top-level
 * layer, and their weights are reported through the parent's weight lists (tfjs-layers' own
 * Wrapper layers nest the same way).
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerVariable} from '@tensorflow/tfjs-layers/dist/variables';
import {disposeSequenceInfo, SequenceInfo, sequenceInfo} from '../ops/sequence';
import {RecurrentGemmaConfig, RecurrentGemmaConfigArgs} from '../src/config';
import {CompactParameter, type CompactSpec} from './compact';

export type {LayerVariable};
export type Kwargs = Record<string, unknown>;

export interface GriffinLayerArgs {
  /** The model's config, as HF config.json fields. */
  config: RecurrentGemmaConfigArgs;
  name?: string;
  /** 'zeros' skips random initialisation (weights about to be loaded). Default 'random'. */
  init?: 'random' | 'zeros';
  trainable?: boolean;
  /** Hold the layer's weight matrices compact (layers/compact.ts); sub-layers inherit it. Default float32. */
  compact?: CompactSpec | null;
}

export abstract class GriffinLayer extends tf.layers.Layer {
  readonly cfg: RecurrentGemmaConfig;
  readonly init: 'random' | 'zeros';
  /** This layer's parameter path inside its top-level layer ('' at top level). */
  prefix = '';
  /** How this layer's matrices are held: null = float32 variables. */
  compact: CompactSpec | null;
  private readonly children_: GriffinLayer[] = [];
  private readonly params_ = new Map<string, LayerVariable>();

  constructor(args: GriffinLayerArgs) {
    super({name: args.name, trainable: args.trainable});
    this.cfg =
      args.config instanceof RecurrentGemmaConfig
        ? args.config
        : RecurrentGemmaConfig.fromJSON(undoCamelCase(args.config) as Record<string, unknown>);
    this.init = args.init ?? 'random';
    this.compact = args.compact ?? null;
  }

  /** Adopts a sub-layer living at `path` below this one. */
  protected child<T extends GriffinLayer>(layer: T, path: string): T {
    layer.setPrefix(`${this.prefix + path}.`);
    layer.setCompact(this.compact);
    this.children_.push(layer);
    return layer;
  }

  private setCompact(spec: CompactSpec | null): void {
    this.compact = spec;
    for (const c of this.children_) c.setCompact(spec);
  }

  private setPrefix(p: string): void {
    const old = this.prefix;
    this.prefix = p;
    for (const c of this.children_) c.setPrefix(p + c.prefix.slice(old.length));
  }

  /**
   * Creates a weight named `prefix + leaf`; `std` > 0 draws N(0, std^2), 0 fills `fill`. A
   * `matrix` is held compact when the layer's `compact` says so (a CompactParameter).
   */
  protected param(leaf: string, shape: number[], std = 0, fill = 0, matrix = false): LayerVariable {
    if (matrix && this.compact != null) return this.compactParam(leaf, shape, std);
    const init =
      this.init === 'zeros'
        ? tf.initializers.zeros()
        : std > 0
          ? tf.initializers.randomNormal({mean: 0, stddev: std})
          : tf.initializers.constant({value: fill});
    const v = this.addWeight(this.prefix + leaf, shape, 'float32', init) as LayerVariable;
    this.params_.set(this.prefix + leaf, v);
    return v;
  }

  private compactParam(leaf: string, shape: number[], std: number): LayerVariable {
    const v = new CompactParameter(this.prefix + leaf, shape, this.compact!);
    if (this.init !== 'zeros' && std > 0) {
      // Not through tidy: it would walk the returned array (2.6 GB for a 2B embedding) for tensors.
      const t = tf.randomNormal(shape, 0, std);
      const values = t.dataSync() as Float32Array;
      t.dispose();
      v.writeValues(values);
    }
    this.params_.set(this.prefix + leaf, v);
    return v;
  }

  /** Creates a weight with explicit initial values (ignored under init 'zeros'). */
  protected paramFrom(leaf: string, shape: number[], values: () => tf.Tensor): LayerVariable {
    const v = this.param(leaf, shape);
    if (this.init !== 'zeros') {
      const t = values();
      v.write(t);
      t.dispose();
    }
    return v;
  }

  /** Builds the sub-layers; subclasses create their own weights, then call super.build. */
  override build(inputShape: tf.Shape | tf.Shape[]): void {
    for (const c of this.children_) {
      if (!c.built) c.build(inputShape);
      c.built = true;
    }
    this.built = true;
  }

  /** Every parameter of this layer and its sub-layers, by path. */
  namedParams(): Map<string, LayerVariable> {
    const out = new Map(this.params_);
    for (const c of this.children_) for (const [k, v] of c.namedParams()) out.set(k, v);
    return out;
  }

  override get trainableWeights(): LayerVariable[] {
    return this.trainable ? [...this.namedParams().values()].filter((v) => v.trainable) : [];
  }
  override set trainableWeights(_: LayerVariable[]) {
    throw new Error(`${this.name}: weights are owned by sub-layers and cannot be replaced`);
  }
  override get nonTrainableWeights(): LayerVariable[] {
    const all = [...this.namedParams().values()];
    return this.trainable ? all.filter((v) => !v.trainable) : all;
  }
  override set nonTrainableWeights(_: LayerVariable[]) {
    throw new Error(`${this.name}: weights are owned by sub-layers and cannot be replaced`);
  }
  override get trainable(): boolean {
    return super.trainable;
  }
  override set trainable(v: boolean) {
    super.trainable = v;
    for (const c of this.children_ ?? []) c.trainable = v;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), config: this.cfg.toModelFields() as tf.serialization.ConfigDict};
  }

  /** Weights exposed in a fixed order: this layer's own first, then each child's. */
  override get weights(): LayerVariable[] {
    return [...this.namedParams().values()];
  }
}

const toSnake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

/**
 * tfjs-layers camel-cases every key and string value of a layer config when it deserializes a
 * model.json (`num_hidden_layers` -> `numHiddenLayers`, `gelu_pytorch_tanh` -> `geluPytorchTanh`).
 * The HF config holds only snake_case keys and lowercase values, so snake-casing undoes it
 * exactly; on a config that was never converted it changes nothing.
 */
export function undoCamelCase(v: unknown): unknown {
  if (typeof v === 'string') return toSnake(v);
  if (Array.isArray(v)) return v.map(undoCamelCase);
  if (v != null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [toSnake(k), undoCamelCase(x)]));
  }
  return v;
}

/**
 * Runs fn with the SequenceInfo passed in kwargs.info, or with the default one (a single
 * document per row starting at t = 0) built for x: [b, t, ...] and disposed afterwards.
 */
export function withInfo<T>(x: tf.Tensor, kwargs: Kwargs | undefined, fn: (info: SequenceInfo) => T): T {
  const given = kwargs?.info as SequenceInfo | undefined;
  if (given != null) return fn(given);
  const info = sequenceInfo(x.shape[0]!, x.shape[1]!);
  try {
    return fn(info);
  } finally {
    disposeSequenceInfo(info);
  }
}
