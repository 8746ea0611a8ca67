/**
 * LoRA: trainable low-rank adapters on the model's Linear layers, base weights frozen; merged
 * into the base weights on request. Saving and loading them (PEFT's layout) is checkpoint I/O:
 * converters/lora_adapter.ts.
 *   const adapters = addLora(model, {rank: 8, alpha: 16, targets: ['q_proj', 'v_proj', 'linear_x']});
 *   mergeLora(model);   // W += (alpha / r) B A
 *
 * A Linear's output becomes y + (alpha / r) * dropout(x) A^T B^T with A [r, in] and B [out, r]
 * (B starts at zero, so a fresh adapter changes nothing). The adapters hang off Linear.adapter
 * and are not layer weights, so namedParameters(), save() and fromPretrained() still see only
 * the base model. Files: adapter_model.safetensors with `base_model.model.<module>.lora_A.weight`
 * (PEFT's names; loading also accepts them without the prefix) and adapter_config.json.
 */
import * as tf from '@tensorflow/tfjs';
import {linear} from '../ops/linear';
import {GriffinLayer, LayerVariable} from './base';
import {Linear, LinearAdapter} from './basic';
import type {ResidualBlock} from './model_layers';

/** What LoRA needs of a model: its residual blocks and its parameters by name. */
export interface LoraHost {
  readonly blocks: readonly ResidualBlock[];
  namedParameters(): Map<string, LayerVariable>;
}

export const ATTENTION_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const RECURRENT_TARGETS = ['linear_x', 'linear_y', 'linear_out'] as const;
export const MLP_TARGETS = ['gate_proj', 'up_proj', 'down_proj'] as const;
export const LORA_TARGETS: readonly string[] = [...ATTENTION_TARGETS, ...RECURRENT_TARGETS, ...MLP_TARGETS];

/** PEFT's prefix of adapter tensor names. */
export const PEFT_PREFIX = 'base_model.model.';

export interface LoraConfig {
  rank: number;
  /** Scale numerator: the update is (alpha / rank) B A. Default rank * 2. */
  alpha?: number;
  /** Dropout on the adapter's input while training. Default 0. */
  dropout?: number;
  /** Leaf names of the Linear layers to adapt (LORA_TARGETS). Default: all of them. */
  targets?: readonly string[];
  /** Seeds A's initial values. Default 0. */
  seed?: number;
}

export class LoraAdapter implements LinearAdapter {
  /** [rank, in] */
  readonly A: tf.Variable;
  /** [out, rank] */
  readonly B: tf.Variable;
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  readonly dropout: number;
  /** Dropout applies only while training (setLoraTraining). */
  training = false;
  /**
   * The dropout mask's seed. The trainer sets one per micro-batch, so gradient checkpointing's
   * recomputation draws the same mask and a resumed run the same masks as an uninterrupted one.
   */
  dropoutSeed: string | null = null;

  constructor(
    readonly module: string,
    inFeatures: number,
    outFeatures: number,
    cfg: Required<LoraConfig>,
  ) {
    this.rank = cfg.rank;
    this.alpha = cfg.alpha;
    this.scale = cfg.alpha / cfg.rank;
    this.dropout = cfg.dropout;
    // PEFT's default: kaiming_uniform(a = sqrt(5)) for A, i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    const bound = 1 / Math.sqrt(inFeatures);
    // tf.variable copies its initial value: free the initial tensors, or each adapter leaks two.
    const a0 = tf.randomUniform([cfg.rank, inFeatures], -bound, bound, 'float32', `lora:${cfg.seed}:${module}`);
    const b0 = tf.zeros([outFeatures, cfg.rank]);
    this.A = tf.variable(a0, true);
    this.B = tf.variable(b0, true);
    tf.dispose([a0, b0]);
  }

  apply(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h =
        this.training && this.dropout > 0 ? tf.dropout(x, this.dropout, undefined, this.dropoutSeed ?? undefined) : x;
      return tf.add(y, tf.mul(linear(linear(h, this.A), this.B), this.scale));
    });
  }

  /** (alpha / r) B A: what merging adds to the base weight, [out, in]. */
  delta(): tf.Tensor {
    return tf.tidy(() => tf.mul(tf.matMul(this.B, this.A), this.scale));
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }
}

/** Every GriffinLayer below `layer`, through its sub-layer fields. */
function sublayers(layer: GriffinLayer, seen = new Set<GriffinLayer>()): GriffinLayer[] {
  for (const v of Object.values(layer)) {
    if (v instanceof GriffinLayer && !seen.has(v)) {
      seen.add(v);
      sublayers(v, seen);
    }
  }
  return [...seen];
}

/** The model's Linear layers by HF module name (`model.layers.3.mlp_block.up_proj`). */
export function linearModules(model: LoraHost): Map<string, Linear> {
  const out = new Map<string, Linear>();
  for (const block of model.blocks) {
    for (const l of sublayers(block)) {
      if (l instanceof Linear) out.set(`${block.name}.${l.prefix.replace(/\.$/, '')}`, l);
    }
  }
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b, 'en', {numeric: true})));
}

/** The adapters attached to the model, by module name. */
export function loraAdapters(model: LoraHost): Map<string, LoraAdapter> {
  const out = new Map<string, LoraAdapter>();
  for (const [name, l] of linearModules(model)) if (l.adapter instanceof LoraAdapter) out.set(name, l.adapter);
  return out;
}

/** The adapter variables inside one layer (a residual block): what gradient checkpointing differentiates. */
export function adapterVariables(layer: GriffinLayer): tf.Variable[] {
  const out: tf.Variable[] = [];
  for (const l of sublayers(layer)) {
    if (l instanceof Linear && l.adapter instanceof LoraAdapter) out.push(l.adapter.A, l.adapter.B);
  }
  return out;
}

/** The trainable adapter variables under their PEFT names. */
export function loraParameters(model: LoraHost): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, a] of loraAdapters(model)) {
    out.set(`${PEFT_PREFIX}${name}.lora_A.weight`, a.A);
    out.set(`${PEFT_PREFIX}${name}.lora_B.weight`, a.B);
  }
  return out;
}

/** Base-weight trainable flags from before addLora, restored by mergeLora / removeLora. */
const frozen = new WeakMap<LoraHost, Map<LayerVariable, boolean>>();

function resolveConfig(cfg: LoraConfig): Required<LoraConfig> {
  const rank = cfg.rank,
    alpha = cfg.alpha ?? rank * 2,
    dropout = cfg.dropout ?? 0;
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`LoRA rank must be a positive integer, got ${rank}`);
  if (!(alpha > 0)) throw new Error(`LoRA alpha must be positive, got ${alpha}`);
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`LoRA dropout must be in [0, 1), got ${dropout}`);
  const targets = [...(cfg.targets ?? LORA_TARGETS)];
  const unknown = targets.filter((t) => !LORA_TARGETS.includes(t));
  if (unknown.length > 0)
    throw new Error(`unknown LoRA target ${JSON.stringify(unknown[0])} (expected some of ${LORA_TARGETS.join(', ')})`);
  if (targets.length === 0) throw new Error('LoRA needs at least one target');
  return {rank, alpha, dropout, targets, seed: cfg.seed ?? 0};
}

/**
 * Attaches an adapter to every Linear whose leaf name is a target and freezes every base weight
 * (trainable = false). Returns the adapters by module name.
 */
export function addLora(model: LoraHost, config: LoraConfig): Map<string, LoraAdapter> {
  const cfg = resolveConfig(config);
  if (loraAdapters(model).size > 0) throw new Error('the model already has LoRA adapters (merge or remove them first)');
  // A rank past a layer's smaller dimension adds parameters and no expressiveness: refused before any is made.
  for (const [name, l] of linearModules(model)) {
    if (!cfg.targets.includes(name.slice(name.lastIndexOf('.') + 1))) continue;
    const most = Math.min(l.inFeatures, l.outFeatures);
    if (cfg.rank > most) {
      throw new Error(
        `LoRA rank ${cfg.rank} is above ${most}, the smaller dimension of ${name} [${l.outFeatures} x ${l.inFeatures}]: use a rank <= ${most}, or leave it out of the targets`,
      );
    }
  }
  const out = new Map<string, LoraAdapter>();
  for (const [name, l] of linearModules(model)) {
    if (!cfg.targets.includes(name.slice(name.lastIndexOf('.') + 1))) continue;
    l.adapter = new LoraAdapter(name, l.inFeatures, l.outFeatures, cfg);
    out.set(name, l.adapter as LoraAdapter);
  }
  // A target that names only layers of another block type (q_proj in an all-recurrent model) is fine.
  if (out.size === 0) throw new Error(`no Linear layer matches the LoRA targets ${cfg.targets.join(', ')}`);
  const flags = new Map<LayerVariable, boolean>();
  for (const v of model.namedParameters().values()) {
    flags.set(v, v.trainable);
    v.trainable = false;
  }
  frozen.set(model, flags);
  return out;
}

function detach(model: LoraHost, merge: boolean): void {
  for (const l of linearModules(model).values()) {
    const a = l.adapter;
    if (!(a instanceof LoraAdapter)) continue;
    if (merge) {
      const w = tf.tidy(() => tf.add(l.weight.read(), a.delta()));
      l.weight.write(w);
      w.dispose();
    }
    l.adapter = null;
    a.dispose();
  }
  for (const [v, t] of frozen.get(model) ?? []) v.trainable = t;
  frozen.delete(model);
}

/** Folds every adapter into its base weight (W += (alpha / r) B A), then drops the adapters. */
export function mergeLora(model: LoraHost): void {
  detach(model, true);
}

/** Drops the adapters, leaving the base weights as they were. */
export function removeLora(model: LoraHost): void {
  detach(model, false);
}

/** Turns adapter dropout on (with a seed for the masks) or off. */
export function setLoraTraining(model: LoraHost, training: boolean, seed?: string | number): void {
  for (const a of loraAdapters(model).values()) {
    a.training = training;
    a.dropoutSeed = seed == null ? null : `${seed}:${a.module}`;
  }
}

export interface AdapterConfigJson {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  bias: 'none';
  fan_in_fan_out: false;
  inference_mode: boolean;
  base_model_name_or_path: string | null;
  [k: string]: unknown;
}

/** The adapters' settings as PEFT's adapter_config.json. */
export function adapterConfig(model: LoraHost, baseModel: string | null = null): AdapterConfigJson {
  const adapters = [...loraAdapters(model)];
  if (adapters.length === 0) throw new Error('the model has no LoRA adapters');
  const first = adapters[0][1];
  const targets = [...new Set(adapters.map(([n]) => n.slice(n.lastIndexOf('.') + 1)))];
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: first.rank,
    lora_alpha: first.alpha,
    lora_dropout: first.dropout,
    target_modules: LORA_TARGETS.filter((t) => targets.includes(t)),
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    base_model_name_or_path: baseModel,
    init_lora_weights: true,
  };
}
