/**
 * RecurrentGemmaForCausalLM: Griffin assembled as a tfjs LayersModel.
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('path/to/checkpoint');
 *   const {logits, loss} = model.forward({inputIds: [[2, 651, 3]], labels: [[2, 651, 3]]});
 *
 * The graph is input_ids -> model.embed_tokens -> model.layers.{i} -> model.final_norm -> LM
 * head (the embedding again when tied). `predict` runs that graph; `forward` runs the same
 * layers with positionIds / attentionMask / labels, and the generation code runs them with
 * a carried state.
 */
import * as tf from '@tensorflow/tfjs';
import {RecurrentGemmaConfig, RecurrentGemmaConfigArgs} from './config';
import {Embedding, LayerState, LMHead, ResidualBlock} from '../layers/model_layers';
import {RMSNorm} from '../layers/basic';
import type {LayerVariable} from '../layers/base';
import {disposeSequenceInfo, sequenceInfo, SequenceInfo} from '../ops/sequence';
import {causalLMLoss} from '../ops/loss';
import type {LoadOptions, SaveOptions} from '../converters/index';
import {decodeStep, GenerationState, prefill, PrefillOptions} from './generation/state';
import {generate, GenerateOptions, streamTokens, TokenEvent} from './generation/generate';
import {checkpointedBlock} from './training/grad_checkpoint';
import {registerTrainingKernels} from './training/kernels';

export type IdsLike = tf.Tensor | number[][];

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
  /** Recompute each block's activations in the backward pass (less memory, same gradients): src/training/grad_checkpoint.ts. */
  gradientCheckpointing?: boolean;
}

export interface ForwardOutputs {
  logits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
}

export interface ModelOptions {
  /** 'zeros' skips random initialisation when weights are about to be loaded. */
  init?: 'random' | 'zeros';
  name?: string;
}

/** Turns ids given as arrays or tensors into an int32 [b, t] tensor (and says if it made it). */
export function toIds(v: IdsLike, name: string): {t: tf.Tensor, owned: boolean} {
  if (v instanceof tf.Tensor) {
    if (v.rank !== 2) throw new Error(`${name} must be [batch, time], got shape [${v.shape}]`);
    return v.dtype === 'int32' ? {t: v, owned: false} : {t: tf.cast(v, 'int32'), owned: true};
  }
  if (!Array.isArray(v) || v.length === 0 || !v.every((r) => Array.isArray(r) && r.length === v[0].length)) {
    throw new Error(`${name} must be a non-empty number[][] with rows of equal length`);
  }
  if (v[0].length === 0) throw new Error(`${name} must have at least one step`);
  return {t: tf.tensor2d(v, undefined, 'int32'), owned: true};
}

function buildGraph(config: RecurrentGemmaConfig, init: 'random' | 'zeros') {
  const input = tf.input({shape: [null], dtype: 'int32', name: 'input_ids'});
  const embed = new Embedding({config, init, name: 'model.embed_tokens'});
  let x = embed.apply(input) as tf.SymbolicTensor;
  const blocks: ResidualBlock[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const block = new ResidualBlock({config, init, layerIndex: i, name: `model.layers.${i}`});
    x = block.apply(x) as tf.SymbolicTensor;
    blocks.push(block);
  }
  const finalNorm = new RMSNorm({config, init, name: 'model.final_norm'});
  x = finalNorm.apply(x) as tf.SymbolicTensor;
  const lmHead = config.tie_word_embeddings ? null : new LMHead({config, init, name: 'lm_head'});
  const logits = (lmHead ?? embed).apply(x) as tf.SymbolicTensor;
  return {input, logits, embed, blocks, finalNorm, lmHead};
}

export class RecurrentGemmaForCausalLM extends tf.LayersModel {
  readonly config: RecurrentGemmaConfig;
  readonly embed: Embedding;
  readonly blocks: ResidualBlock[];
  readonly finalNorm: RMSNorm;
  readonly lmHead: LMHead | null;

  constructor(config: RecurrentGemmaConfig | RecurrentGemmaConfigArgs, opts: ModelOptions = {}) {
    const cfg = config instanceof RecurrentGemmaConfig ? config : new RecurrentGemmaConfig(config);
    const g = buildGraph(cfg, opts.init ?? 'random');
    super({inputs: g.input, outputs: g.logits, name: opts.name ?? 'recurrent_gemma'});
    this.config = cfg;
    this.embed = g.embed;
    this.blocks = g.blocks;
    this.finalNorm = g.finalNorm;
    this.lmHead = g.lmHead;
  }

  /**
   * Loads a checkpoint directory: Hugging Face layout (config.json + safetensors, single or
   * sharded, float32/float16/bfloat16) or tfjs layout (model.json + shards). A URL
   * (http(s)://, indexeddb://; in a browser any URL) loads the tfjs layout over the network,
   * onProgress counting bytes (converters/tfjs_url.ts).
   */
  static async fromPretrained(dir: string, opts: LoadOptions = {}): Promise<RecurrentGemmaForCausalLM> {
    const {isUrlSource, loadTfjsUrl} = await import('../converters/tfjs_url');
    if (isUrlSource(dir)) return loadTfjsUrl(dir, opts);
    const {loadPretrained} = await import('../converters/index');
    return loadPretrained(dir, opts);
  }

  /**
   * Saves to a directory: `{format: 'hf'}` (default) or `{format: 'tfjs', dtype?}`. A tfjs
   * IOHandler or URL ('indexeddb://...', 'downloads://...') is passed on to LayersModel.save.
   */
  override async save(dirOrHandler: string | tf.io.IOHandler, opts?: SaveOptions & tf.io.SaveConfig): Promise<tf.io.SaveResult> {
    if (typeof dirOrHandler !== 'string' || /^[a-z][a-z0-9+.-]*:\/\//i.test(dirOrHandler)) {
      // The config travels with the weights, so that fromPretrained('indexeddb://...') can rebuild the model.
      this.setUserDefinedMetadata({griffin: {config: this.config.toJSON()}});
      return super.save(dirOrHandler, opts);
    }
    const {savePretrained} = await import('../converters/index');
    await savePretrained(this, dirOrHandler, opts);
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }

  /**
   * Frees every weight. The embedding sits twice in the graph when the head is tied, so
   * LayersModel's per-layer reference count would keep it alive: free what is left by hand.
   */
  override dispose(): ReturnType<tf.LayersModel['dispose']> {
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
   * Every fit / evaluate / trainOnBatch passes here first, so this is also where the cpu and
   * wasm backends get the segment-sum kernel that gather's gradient needs (src/training/kernels.ts).
   */
  protected override standardizeUserDataXY(x: tf.Tensor | tf.Tensor[] | {[name: string]: tf.Tensor},
      y: tf.Tensor | tf.Tensor[] | {[name: string]: tf.Tensor}, checkBatchAxis?: boolean, batchSize?: number): [tf.Tensor[], tf.Tensor[]] {
    registerTrainingKernels(tf.getBackend());
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
   * The full-sequence forward pass. Returns logits [b, t, V] float32, the loss when labels are
   * given, and on request the hidden states. The caller owns (and disposes) the tensors.
   */
  forward(inputs: ForwardInputs): ForwardOutputs {
    const ids = toIds(inputs.inputIds, 'inputIds');
    const [b, t] = ids.t.shape;
    const own = (v: IdsLike | null | undefined, name: string) => (v == null ? null : toIds(v, name));
    const pos = own(inputs.positionIds, 'positionIds');
    const mask = own(inputs.attentionMask, 'attentionMask');
    const labels = own(inputs.labels, 'labels');
    let info: SequenceInfo | null = null;
    try {
      if (labels != null && (labels.t.shape[0] !== b || labels.t.shape[1] !== t)) {
        throw new Error(`labels must have shape [${b}, ${t}] like inputIds, got [${labels.t.shape}]`);
      }
      info = sequenceInfo(b, t, {positionIds: pos?.t, attentionMask: mask?.t});
      const inf = info;
      return tf.tidy(() => {
        const hidden: tf.Tensor[] = [];
        let x = this.embed.embed(ids.t);
        for (const block of this.blocks) {
          hidden.push(x);
          x = inputs.gradientCheckpointing ? checkpointedBlock(block, x, inf) : block.forwardWithState(x, inf).y;
        }
        x = this.finalNorm.call(x);
        hidden.push(x);
        const logits = this.lmHead ? this.lmHead.call(x) : this.embed.logits(x);
        const out: ForwardOutputs = {logits};
        if (labels != null) out.loss = causalLMLoss(labels.t, logits);
        if (inputs.outputHiddenStates) out.hiddenStates = hidden;
        return out as unknown as tf.TensorContainer;
      }) as unknown as ForwardOutputs;
    } finally {
      if (info != null) disposeSequenceInfo(info);
      for (const v of [ids, pos, mask, labels]) if (v?.owned) v.t.dispose();
    }
  }

  /** Runs the layers over a chunk with per-layer state (prefill / decode): see src/generation. */
  forwardChunk(ids: tf.Tensor, info: SequenceInfo, states: (LayerState | null)[] | null, keepState: boolean):
      {logits: tf.Tensor, states: LayerState[]} {
    const newStates: LayerState[] = [];
    const logits = tf.tidy(() => {
      let x = this.embed.embed(ids);
      this.blocks.forEach((block, i) => {
        const r = block.forwardWithState(x, info, states?.[i] ?? null, keepState);
        x = r.y;
        if (r.state) {
          Object.values(r.state).forEach((s) => tf.keep(s as tf.Tensor));
          newStates.push(r.state);
        }
      });
      x = this.finalNorm.call(x);
      return this.lmHead ? this.lmHead.call(x) : this.embed.logits(x);
    });
    return {logits, states: newStates};
  }

  /**
   * Runs a prompt through the model (one parallel pass per chunk of opts.chunkSize steps) and
   * returns the constant-size decoding state after it; with opts.state, continues that state in
   * place (chat turns). See src/generation/state.ts.
   */
  prefill(inputIds: IdsLike, opts: PrefillOptions = {}): GenerationState {
    return prefill(this, inputIds, opts);
  }

  /** Feeds one token per row, advancing `state` in place; returns logits [b, V] (caller disposes). */
  decodeStep(state: GenerationState, nextIds: number[] | number[][] | tf.Tensor): {logits: tf.Tensor, state: GenerationState} {
    return decodeStep(this, state, nextIds);
  }

  /** Reads a state written by `state.save(file)`. */
  loadState(file: string): Promise<GenerationState> {
    return GenerationState.load(file, this);
  }

  /** Samples continuations: prompt (without padding) + new tokens per row. See src/generation/generate.ts. */
  generate(inputIds: IdsLike, opts: GenerateOptions = {}): Promise<number[][]> {
    return generate(this, inputIds, opts);
  }

  /** The same generation as token events, as they are produced. */
  stream(inputIds: IdsLike, opts: GenerateOptions = {}): AsyncGenerator<TokenEvent, void, undefined> {
    return streamTokens(this, inputIds, opts);
  }
}
