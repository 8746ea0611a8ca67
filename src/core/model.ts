/**
 * The model core: Griffin's graph as a tfjs LayersModel, and `forward`, the one loop over the
 * layers that the full pass, prefill, decoding and training all run.
 *   const core = new CausalLMCore(config);
 *   const {logits, loss} = core.forward({inputIds: [[2, 651, 3]], labels: [[2, 651, 3]]});
 *   const {state} = core.forward({inputIds: [[2, 651]], returnState: true, lastPositionOnly: true});
 *
 * The graph is input_ids -> model.embed_tokens -> model.layers.{i} -> model.final_norm -> LM
 * head (the embedding again when tied). `predict` runs that graph; `forward` runs the same layers
 * with positionIds / attentionMask / labels and, on request, a carried per-layer state. The
 * public class, RecurrentGemmaForCausalLM (src/model.ts), adds loading, saving and generation
 * on top; nothing here knows of them.
 *
 * Shape letters: b batch, t time, d hidden_size, V vocab_size.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerVariable} from '../../layers/base';
import {RMSNorm} from '../../layers/basic';
import {CompactParameter} from '../../layers/compact';
import {checkpointedBlock} from '../../layers/grad_checkpoint';
import {removeLora} from '../../layers/lora';
import {Embedding, LayerState, LMHead, ResidualBlock} from '../../layers/model_layers';
import {type CompactSpec, checkSpec, type WeightDtype} from '../../ops/compact/format';
import {causalLMLoss} from '../../ops/loss';
import {disposeSequenceInfo, SequenceInfo, sequenceInfo} from '../../ops/sequence';
import {RecurrentGemmaConfig, RecurrentGemmaConfigArgs} from '../config';
import {IdsLike, idTensor} from '../util/ids';

export type {IdsLike};

export interface ForwardInputs {
  /** [b, t] token ids. */
  inputIds: IdsLike;
  /** [b, t]; the loss at step i predicts labels[i + 1]; -100 is ignored. */
  labels?: IdsLike | null;
  /** [b, t]; 0 starts a document (packed rows). Default 0..t-1 (counting only tokens with a mask). */
  positionIds?: IdsLike | null;
  /** [b, t]; 1 = token, 0 = padding. */
  attentionMask?: IdsLike | null;
  /** Also return the hidden states: the embeddings, the input of every later layer, the final norm's output. */
  outputHiddenStates?: boolean;
  /** Recompute each block's activations in the backward pass (less memory, same gradients): layers/grad_checkpoint.ts. */
  gradientCheckpointing?: boolean;
  /**
   * Each layer's decoding state before this chunk (null entries, or no array: start fresh); the
   * positionIds then continue the state's positions. Read, never disposed here.
   */
  state?: readonly (LayerState | null)[] | null;
  /** Also return each layer's state after the last step (`outputs.state`, owned by the caller). */
  returnState?: boolean;
  /** Logits only for each row's last step: [b, 1, V] instead of [b, t, V] (a prompt's other logits cost t * V * d). */
  lastPositionOnly?: boolean;
}

export interface ForwardOutputs {
  logits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
  /** Per layer: {conv, rnn} (recurrent) or {k, v, valid} (attention), with returnState. */
  state?: LayerState[];
}

export interface ModelOptions {
  /** 'zeros' skips random initialisation when weights are about to be loaded. */
  init?: 'random' | 'zeros';
  name?: string;
  /** Hold the weight matrices (linears, embedding, LM head) compact: ops/compact/format.ts. Default float32. */
  compact?: CompactSpec | null;
}

/**
 * Checks a compact spec against every matrix width (input features) the config gives, before
 * anything is allocated: a group size must divide each (one-line error naming the matrix).
 */
function checkCompactWidths(c: RecurrentGemmaConfig, spec: CompactSpec): void {
  const widths: [string, number][] = [
    ['embedding, q/k/v, linear_x/y, gate/up_proj', c.hidden_size],
    ['linear_out', c.lru_width],
    ['down_proj', c.intermediate_size / 2],
    ['o_proj', c.num_attention_heads * c.head_dim],
  ];
  for (const [what, w] of widths) checkSpec(spec, 1, w, what);
}

function buildGraph(config: RecurrentGemmaConfig, init: 'random' | 'zeros', compact: CompactSpec | null) {
  const input = tf.input({shape: [null], dtype: 'int32', name: 'input_ids'});
  const embed = new Embedding({config, init, compact, name: 'model.embed_tokens'});
  let x = embed.apply(input) as tf.SymbolicTensor;
  const blocks: ResidualBlock[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const block = new ResidualBlock({config, init, compact, layerIndex: i, name: `model.layers.${i}`});
    x = block.apply(x) as tf.SymbolicTensor;
    blocks.push(block);
  }
  const finalNorm = new RMSNorm({config, init, name: 'model.final_norm'});
  x = finalNorm.apply(x) as tf.SymbolicTensor;
  const lmHead = config.tie_word_embeddings ? null : new LMHead({config, init, compact, name: 'lm_head'});
  const logits = (lmHead ?? embed).apply(x) as tf.SymbolicTensor;
  return {input, logits, embed, blocks, finalNorm, lmHead};
}

export class CausalLMCore extends tf.LayersModel {
  readonly config: RecurrentGemmaConfig;
  readonly embed: Embedding;
  readonly blocks: ResidualBlock[];
  readonly finalNorm: RMSNorm;
  readonly lmHead: LMHead | null;
  readonly compact: CompactSpec | null;

  constructor(config: RecurrentGemmaConfig | RecurrentGemmaConfigArgs, opts: ModelOptions = {}) {
    const cfg = config instanceof RecurrentGemmaConfig ? config : new RecurrentGemmaConfig(config);
    if (opts.compact != null) checkCompactWidths(cfg, opts.compact);
    const g = buildGraph(cfg, opts.init ?? 'random', opts.compact ?? null);
    super({inputs: g.input, outputs: g.logits, name: opts.name ?? 'recurrent_gemma'});
    this.config = cfg;
    this.embed = g.embed;
    this.blocks = g.blocks;
    this.finalNorm = g.finalNorm;
    this.lmHead = g.lmHead;
    this.compact = opts.compact ?? null;
  }

  /** How the weight matrices are held: float32, or a compact dtype (ops/compact/format.ts). */
  get weightDtype(): WeightDtype {
    return this.compact?.dtype ?? 'float32';
  }

  /** Bytes the weights take on the backend (packed matrices at their packed size). */
  weightBytes(): number {
    let n = 0;
    for (const v of this.namedParameters().values()) {
      n += v instanceof CompactParameter ? v.byteSize : v.shape.reduce((a: number, b) => a * (b as number), 1) * 4;
    }
    return n;
  }

  /**
   * Frees every weight. The embedding sits twice in the graph when the head is tied, so
   * LayersModel's per-layer reference count would keep it alive: free what is left by hand.
   */
  override dispose(): ReturnType<tf.LayersModel['dispose']> {
    removeLora(this); // attached adapters (fromPretrained(..., {adapter})) are not layer weights
    const params = [...this.namedParameters().values()];
    const result = super.dispose();
    for (const v of params) {
      if (!(v as unknown as {val: tf.Tensor}).val.isDisposed) {
        v.dispose();
        result.numDisposedVariables++;
      }
    }
    return result;
  }

  /** Every parameter under its Hugging Face name (no lm_head.weight when tied). */
  namedParameters(): Map<string, LayerVariable> {
    const out = new Map<string, LayerVariable>();
    const top = [this.embed, ...this.blocks, this.finalNorm, ...(this.lmHead ? [this.lmHead] : [])];
    for (const layer of top) {
      for (const [path, v] of layer.namedParams()) out.set(`${layer.name}.${path}`, v);
    }
    return out;
  }

  /**
   * fit / evaluate with `loss: causalLMLoss`: its targets are token labels [b, t], where tfjs
   * would demand the output's shape [b, t, V]; so with that loss they are checked as [b, t].
   */
  protected override standardizeUserDataXY(
    x: tf.Tensor | tf.Tensor[] | {[name: string]: tf.Tensor},
    y: tf.Tensor | tf.Tensor[] | {[name: string]: tf.Tensor},
    checkBatchAxis?: boolean,
    batchSize?: number,
  ): [tf.Tensor[], tf.Tensor[]] {
    const self = this as unknown as {feedOutputShapes: tf.Shape[]};
    if (!this.lossFunctions?.length || !this.lossFunctions.every((f) => f === causalLMLoss)) {
      return super.standardizeUserDataXY(x, y, checkBatchAxis, batchSize);
    }
    const shapes = self.feedOutputShapes;
    self.feedOutputShapes = shapes.map((s) => s.slice(0, -1));
    try {
      return super.standardizeUserDataXY(x, y, checkBatchAxis, batchSize);
    } finally {
      self.feedOutputShapes = shapes;
    }
  }

  /**
   * The forward pass. Returns logits [b, t, V] float32 ([b, 1, V] with lastPositionOnly), the
   * loss when labels are given, on request the hidden states and each layer's state after the
   * chunk. The caller owns (and disposes) the tensors.
   */
  forward(inputs: ForwardInputs): ForwardOutputs {
    const ids = idTensor(inputs.inputIds, 'inputIds');
    const [b, t] = ids.t.shape;
    const own = (v: IdsLike | null | undefined, name: string) => (v == null ? null : idTensor(v, name));
    let pos = null,
      mask = null,
      labels = null;
    let info: SequenceInfo | null = null;
    try {
      pos = own(inputs.positionIds, 'positionIds');
      mask = own(inputs.attentionMask, 'attentionMask');
      labels = own(inputs.labels, 'labels');
      if (labels != null && (labels.t.shape[0] !== b || labels.t.shape[1] !== t)) {
        throw new Error(`labels must have shape [${b}, ${t}] like inputIds, got [${labels.t.shape}]`);
      }
      if (labels != null && inputs.lastPositionOnly)
        throw new Error("labels need every position's logits, not lastPositionOnly");
      const carry = inputs.state != null || inputs.returnState === true;
      if (carry && inputs.gradientCheckpointing)
        throw new Error('gradientCheckpointing does not carry a decoding state');
      if (inputs.state != null && inputs.state.length !== this.blocks.length) {
        throw new Error(`state has ${inputs.state.length} layers, the model ${this.blocks.length}`);
      }
      info = sequenceInfo(b, t, {positionIds: pos?.t, attentionMask: mask?.t});
      const inf = info,
        labelIds = labels?.t ?? null;
      return tf.tidy(() => {
        const hidden: tf.Tensor[] = [];
        const states: LayerState[] = [];
        let x = this.embed.embed(ids.t);
        this.blocks.forEach((block, i) => {
          hidden.push(x);
          if (inputs.gradientCheckpointing) {
            x = checkpointedBlock(block, x, inf);
            return;
          }
          const r = block.forwardWithState(x, inf, inputs.state?.[i] ?? null, inputs.returnState === true);
          x = r.y;
          if (inputs.returnState) states.push(r.state!);
          else if (r.state != null) tf.dispose(Object.values(r.state) as tf.Tensor[]);
        });
        if (inputs.lastPositionOnly) x = tf.slice(x, [0, t - 1, 0], [b, 1, x.shape[2]!]);
        x = this.finalNorm.call(x);
        hidden.push(x);
        const logits = this.lmHead ? this.lmHead.call(x) : this.embed.logits(x);
        const out: ForwardOutputs = {logits};
        if (labelIds != null) out.loss = causalLMLoss(labelIds, logits);
        if (inputs.outputHiddenStates) out.hiddenStates = hidden;
        if (inputs.returnState) out.state = states;
        return out as unknown as tf.TensorContainer;
      }) as unknown as ForwardOutputs;
    } finally {
      if (info != null) disposeSequenceInfo(info);
      for (const v of [ids, pos, mask, labels]) if (v?.owned) v.t.dispose();
    }
  }
}
