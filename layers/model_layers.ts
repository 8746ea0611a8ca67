/**
 * The layers that make up the model's graph: the embedding (shared with the tied LM head),
 * the residual block and the untied LM head.
 *   const emb = new Embedding({config, name: 'model.embed_tokens'});
 *   const x = emb.apply(ids);  const logits = emb.apply(hidden);   // rank picks the direction
 *
 * Shape letters: b batch, t time, d hidden_size, V vocab_size.
 */
import * as tf from '@tensorflow/tfjs';
import {roundToBfloat16, softCap} from '../ops/activations';
import {perWord} from '../ops/compact/format';
import {SequenceInfo} from '../ops/sequence';
import {checkIdRange} from '../src/util/ids';
import {AttentionState, LocalAttentionBlock} from './attention';
import {GriffinLayer, GriffinLayerArgs, Kwargs, LayerVariable, withInfo} from './base';
import {MLPBlock, RMSNorm} from './basic';
import {RecurrentBlock, RecurrentState} from './recurrent';
import {maxPieceBytes, VocabMatrix} from './vocab_split';

function singleVariable(m: VocabMatrix | undefined, layer: string): LayerVariable {
  if (m == null) throw new Error(`${layer}: not built yet`);
  if (m.split) throw new Error(`${layer}: the matrix is split in ${m.pieces.length} pieces (matrix.pieces)`);
  return m.pieces[0].variable;
}

/** Throws when an id is outside [0, V): a lookup there would silently read garbage. */
export function checkTokenIds(ids: tf.Tensor, vocabSize: number): void {
  if (ids.size === 0) return;
  let values: ArrayLike<number>;
  try {
    // Host-created ids (the usual case) are read without touching the device. webgpu in Node
    // cannot read device data synchronously at all (no OffscreenCanvas): there the check is
    // skipped, and webgpu's gather reads an out-of-range id as a zero vector, not garbage.
    values = ids.dataSync();
  } catch {
    return;
  }
  checkIdRange(values, vocabSize);
}

/** A layer owning one [V, d] vocabulary matrix named `weight` (row pieces past the binding limit). */
abstract class VocabLayer extends GriffinLayer {
  matrix!: VocabMatrix;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const {vocab_size: V, hidden_size: d} = this.cfg;
    // Pieces are sized by the bytes a row takes as held: packed words when compact.
    const rowBytes = this.compact != null ? (d * 4) / perWord(this.compact.dtype) : d * 4;
    const param = (leaf: string, shape: number[]) => this.param(leaf, shape, 1 / Math.sqrt(d), 0, true);
    this.matrix = VocabMatrix.create(V, d, 'weight', param, maxPieceBytes(), rowBytes);
    super.build(inputShape);
  }
  /** The [V, d] matrix's variable; when it is split, see `matrix.pieces`. */
  get weight(): LayerVariable {
    return singleVariable(this.matrix, this.name);
  }
}

/** hidden [b, t, d] -> cap * tanh((hidden @ matrix^T) / cap): [b, t, V]; tied or untied head alike. */
function headLogits(matrix: VocabMatrix, hidden: tf.Tensor, cap: number): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, d] = hidden.shape as number[];
    const l = matrix.project(tf.reshape(hidden, [b * t, d]));
    return softCap(tf.reshape(l, [b, t, -1]), cap);
  });
}

/**
 * ids [b, t] -> embeddings [b, t, d] * bf16(sqrt(d)); hidden [b, t, d] -> soft-capped logits
 * [b, t, V] through the same matrix (the tied LM head). Past the device's buffer-binding limit
 * the matrix is held in row pieces (layers/vocab_split.ts), with the same results.
 */
export class Embedding extends VocabLayer {
  static className = 'GriffinEmbedding';

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s.length === 2 ? [...s, this.cfg.hidden_size] : [...s.slice(0, -1), this.cfg.vocab_size];
  }

  /** Both references scale by sqrt(d) rounded to bfloat16 (50.5 for d = 2560). */
  get scale(): number {
    return roundToBfloat16(Math.sqrt(this.cfg.hidden_size));
  }

  embed(ids: tf.Tensor): tf.Tensor {
    checkTokenIds(ids, this.cfg.vocab_size);
    return tf.tidy(() => tf.mul(this.matrix.lookup(ids), this.scale));
  }
  logits(hidden: tf.Tensor): tf.Tensor {
    return headLogits(this.matrix, hidden, this.cfg.logits_soft_cap);
  }
  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return x.rank === 2 ? this.embed(x) : this.logits(x);
  }
}
tf.serialization.registerClass(Embedding);

/** An untied LM head: hidden [b, t, d] -> soft-capped logits [b, t, V] (split like the Embedding). */
export class LMHead extends VocabLayer {
  static className = 'GriffinLMHead';

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return [...s.slice(0, -1), this.cfg.vocab_size];
  }
  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return headLogits(this.matrix, x, this.cfg.logits_soft_cap);
  }
}
tf.serialization.registerClass(LMHead);

export type LayerState = RecurrentState | AttentionState;

export interface ResidualBlockArgs extends GriffinLayerArgs {
  /** Which layer of the model this is (picks its block type). */
  layerIndex: number;
}

/**
 * x + temporal_block(norm(x)), then + mlp_block(norm(.)). x: [b, t, d] -> [b, t, d].
 */
export class ResidualBlock extends GriffinLayer {
  static className = 'GriffinResidualBlock';
  readonly layerIndex: number;
  readonly temporal_pre_norm: RMSNorm;
  readonly temporal_block: RecurrentBlock | LocalAttentionBlock;
  readonly channel_pre_norm: RMSNorm;
  readonly mlp_block: MLPBlock;

  constructor(args: ResidualBlockArgs) {
    super(args);
    this.layerIndex = args.layerIndex;
    const c = this.cfg,
      init = this.init;
    this.temporal_pre_norm = this.child(new RMSNorm({config: c, init}), 'temporal_pre_norm');
    this.temporal_block = this.child(
      this.blockType === 'recurrent'
        ? new RecurrentBlock({config: c, init})
        : new LocalAttentionBlock({config: c, init}),
      'temporal_block',
    );
    this.channel_pre_norm = this.child(new RMSNorm({config: c, init}), 'channel_pre_norm');
    this.mlp_block = this.child(new MLPBlock({config: c, init}), 'mlp_block');
  }

  get blockType() {
    return this.cfg.layers_block_type[this.layerIndex];
  }

  override computeOutputShape(s: tf.Shape): tf.Shape {
    return s;
  }

  initState(b: number): LayerState {
    return this.temporal_block.initState(b);
  }

  /** With `state` (or keepState), also returns the layer's state after the chunk. */
  forwardWithState(
    x: tf.Tensor,
    info: SequenceInfo,
    state?: LayerState | null,
    keepState = false,
  ): {y: tf.Tensor; state: LayerState | null} {
    let newState: LayerState | null = null;
    const y = tf.tidy(() => {
      const normed = this.temporal_pre_norm.call(x);
      let temporal: tf.Tensor;
      if (this.temporal_block instanceof RecurrentBlock) {
        const r = this.temporal_block.forwardWithState(normed, info, state as RecurrentState | null);
        temporal = r.y;
        newState = r.state;
      } else {
        const r = this.temporal_block.forwardWithState(normed, info, state as AttentionState | null, keepState);
        temporal = r.y;
        newState = r.state;
      }
      const residual = tf.add(temporal, x);
      const out = tf.add(this.mlp_block.call(this.channel_pre_norm.call(residual)), residual);
      if (newState != null) Object.values(newState).forEach((t) => tf.keep(t as tf.Tensor));
      return out;
    });
    if (newState != null && state == null && !keepState) {
      tf.dispose(Object.values(newState as object) as tf.Tensor[]);
      newState = null;
    }
    return {y, state: newState};
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return withInfo(x, kwargs, (info) => this.forwardWithState(x, info).y);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), layerIndex: this.layerIndex};
  }
}
tf.serialization.registerClass(ResidualBlock);
