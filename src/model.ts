/**
 * RecurrentGemmaForCausalLM: the package's model class. The core (src/core/model.ts: the graph
 * and `forward`) plus what a user does with a model: load, save, prefill, decode, generate.
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('path/to/checkpoint');
 *   const tuned = await RecurrentGemmaForCausalLM.fromPretrained('base/', {adapter: 'lora/'});  // or ('lora/')
 *   const hub = await RecurrentGemmaForCausalLM.fromPretrained('owner/name', {revision: 'main'});  // Hugging Face Hub
 *   const {logits, loss} = model.forward({inputIds: [[2, 651, 3]], labels: [[2, 651, 3]]});
 *   const all = model.predict(tf.tensor2d([[2, 651, 3]], undefined, 'int32')) as tf.Tensor;   // [1, 3, V]
 *   const ids = await model.generate([[2, 651]], {maxNewTokens: 16, temperature: 0});
 *
 * On webgpu, forward and predict run on the fused prefill engine where it applies
 * (src/engines/webgpu_prefill/forward.ts; env GRIFFIN_FUSED_FORWARD=0: tfjs ops), else the core's
 * tfjs ops.
 *
 * This file sits above checkpoint I/O (converters/) and generation (src/generation/), which
 * work on the core and never import this class.
 */

import {type HubOptions, hubFetch, resolveSource} from '../converters/hub';
import {
  type CheckpointReader,
  type LoadOptions,
  openCheckpoint,
  type SaveOptions,
  savePretrained,
} from '../converters/index';
import {adapterSource, loadLoraAdapter} from '../converters/lora_adapter';
import {CheckpointError} from '../converters/safetensors';
import {type CompactSpec, packedBytes, type WeightDtype, weightSpec} from '../ops/compact/format';
import {calibrateInto} from './core/calibrate';
import {CausalLMCore, type ForwardInputs, type ForwardOutputs} from './core/model';
import {calibrationRows} from './data/calibration';
import {fusedForward} from './engines/webgpu_prefill/forward';
import {GenerateOptions, generate, streamTokens, TokenEvent} from './generation/generate';
import {decodeStep, GenerationState, PrefillOptions, prefill} from './generation/state';
import {tf} from './tf';
import {GemmaTokenizer} from './tokenizer';
import type {IdsLike} from './util/ids';
import {WASM_MAX_WEIGHT_BYTES} from './util/limits';

export type {ForwardInputs, ForwardOutputs, IdsLike, ModelOptions} from './core/model';
export type {WeightDtype};

export interface PretrainedOptions extends LoadOptions, HubOptions {
  /**
   * How the weight matrices (linears, embedding, LM head) are held: 'float32' (the default for
   * now), 'bfloat16', 'float16', 'int8' (one scale per output channel), 'int4' (groupwise), or
   * 'auto': the checkpoint's own (a bfloat16 checkpoint stays bfloat16, with no rounding; a
   * compact tfjs export from `griffin convert` keeps its encoding, group size included, its packed
   * words loaded as they are).
   * Arithmetic stays float32. Formats: ops/compact/format.ts.
   */
  dtype?: 'auto' | WeightDtype;
  /** int4: values per scale (32, 64 or 128; default 64). */
  groupSize?: number;
  /** int4: a zero point per group (asymmetric ranges). */
  zeroPoints?: boolean;
  /**
   * int4: fit the weights to what each matrix sees on calibration text (GPTQ, ops/compact/gptq.ts)
   * instead of the data-free group fit: 'default' (the Brown corpus's training split) or a UTF-8
   * text file. Needs a float checkpoint with its tokenizer, and holds the float32 model once
   * while fitting (docs/compact-format.md). The packed format is the same.
   */
  calibration?: string;
  /** Calibration tokens at most (whole rows of 256; default 32768, bounds [256, 4194304]). */
  calibrationTokens?: number;
  /**
   * A LoRA adapter directory (PEFT's layout) or Hub id (its default branch) to attach after
   * loading: the model then runs base + adapter, as PEFT's PeftModel does (mergeLora folds it in,
   * layers/lora.ts).
   */
  adapter?: string;
}

/** The compact spec a load asks for, 'auto' resolved against the checkpoint. */
function resolveSpec(ckpt: CheckpointReader, opts: PretrainedOptions): CompactSpec | null {
  const dtype = opts.dtype ?? 'float32';
  const {groupSize, zeroPoints} = opts;
  if (dtype === 'auto' && ckpt.storedDtype === 'int4') {
    // An int4 export keeps its own groups unless asked otherwise.
    return weightSpec('int4', {
      groupSize: groupSize ?? ckpt.storedGroupSize,
      zeroPoints: zeroPoints ?? ckpt.storedZeroPoints,
    });
  }
  return weightSpec(dtype === 'auto' ? ckpt.storedDtype : dtype, {groupSize, zeroPoints});
}

/** Refuses, before allocating, weights that wasm's heap cannot hold (estimated from the checkpoint's header). */
function checkWasmHeap(ckpt: CheckpointReader, spec: CompactSpec | null): void {
  if (tf.getBackend() !== 'wasm') return;
  // Matrices shrink by their packing; the few vectors are counted packed too (a slight underestimate).
  const values = ckpt.float32Bytes / 4;
  const bytes =
    spec == null ? ckpt.float32Bytes : packedBytes(spec.dtype, 1, values, spec.groupSize ?? 64, spec.zeroPoints);
  if (bytes <= WASM_MAX_WEIGHT_BYTES) return;
  const gib = (bytes / 2 ** 30).toFixed(1);
  throw new CheckpointError(
    `${ckpt.where}: its weights take ${gib} GiB in ${spec?.dtype ?? 'float32'}, more than the wasm backend's 4 GiB ` +
      'memory holds with room to run; use --dtype int8 or int4, the cpu backend (--backend cpu), tensorflow or webgpu',
  );
}

export class RecurrentGemmaForCausalLM extends CausalLMCore {
  /**
   * Loads a checkpoint directory: Hugging Face layout (config.json + safetensors, single or
   * sharded, float32/float16/bfloat16) or tfjs layout (model.json + shards). A URL
   * (http(s)://, indexeddb://; in a browser any URL) loads the tfjs layout over the network,
   * onProgress counting bytes (converters/tfjs_url.ts). The checkpoint's config and tensor list
   * are checked before the model is built; on any failure nothing is left allocated. `dtype`
   * holds the matrices compact, packed tensor by tensor as they load (peak: one float32 tensor).
   *
   * An adapter directory (adapter_config.json + adapter_model.safetensors, as PEFT and `griffin
   * finetune --lora-rank` write it) loads its base_model_name_or_path and attaches itself; so
   * does `{adapter: dir}` on any base.
   *
   * A Hugging Face Hub id ('owner/name') that is not a local path downloads the files it needs into
   * the huggingface_hub cache, shared with Python (converters/hub.ts; onProgress counts bytes
   * then); `revision` pins it. An adapter's base may be a Hub id too.
   */
  static async fromPretrained(source: string, opts: PretrainedOptions = {}): Promise<RecurrentGemmaForCausalLM> {
    const want = {weights: true};
    const local = await resolveSource(source, want, opts);
    const adapterDir =
      opts.adapter == null ? undefined : await resolveSource(opts.adapter, want, {...opts, revision: undefined});
    const picked = adapterSource(local, adapterDir);
    const base =
      picked.base === local ? local : await resolveSource(picked.base, want, {...opts, revision: picked.baseRevision});
    const adapter = picked.adapter;
    const ckpt = await openCheckpoint(base, {fetch: hubFetch(opts)});
    const compact = resolveSpec(ckpt, opts);
    const calibrate = opts.calibration != null || opts.calibrationTokens != null;
    if (calibrate && compact?.dtype !== 'int4')
      throw new Error('calibration fits int4 weights: use it with dtype int4');
    if (calibrate && ckpt.storedDtype === 'int4')
      throw new CheckpointError(`${ckpt.where}: is already int4; calibration needs a float checkpoint`);
    checkWasmHeap(ckpt, calibrate ? null : compact);
    const model = new RecurrentGemmaForCausalLM(ckpt.config, {init: 'zeros', compact});
    try {
      if (calibrate) {
        const rows = calibrationRows(opts.calibration ?? 'default', await GemmaTokenizer.load(base), {
          maxTokens: opts.calibrationTokens,
        });
        const source = new RecurrentGemmaForCausalLM(ckpt.config, {init: 'zeros'});
        try {
          await ckpt.loadInto(source, opts.onProgress);
          calibrateInto(model, source, rows);
        } finally {
          source.dispose();
        }
      } else await ckpt.loadInto(model, opts.onProgress);
      if (adapter != null) loadLoraAdapter(model, adapter);
      return model;
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /**
   * Saves to a directory: `{format: 'hf'}` (default) or `{format: 'tfjs', dtype?}`. A tfjs
   * IOHandler or URL ('indexeddb://...', 'downloads://...') is passed on to LayersModel.save.
   */
  override async save(
    dirOrHandler: string | tf.io.IOHandler,
    opts?: SaveOptions & tf.io.SaveConfig,
  ): Promise<tf.io.SaveResult> {
    if (typeof dirOrHandler !== 'string' || /^[a-z][a-z0-9+.-]*:\/\//i.test(dirOrHandler)) {
      // The config travels with the weights, so that fromPretrained('indexeddb://...') can rebuild the model.
      this.setUserDefinedMetadata({griffin: {config: this.config.toJSON()}});
      return super.save(dirOrHandler, opts);
    }
    await savePretrained(this, dirOrHandler, opts);
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }

  /**
   * The forward pass (see CausalLMCore.forward): on webgpu through the fused prefill engine when
   * it can honour the inputs (no padding, no gradients being recorded, ...; see
   * engines/webgpu_prefill/forward.ts), else on tfjs ops. The same outputs either way.
   */
  override forward(inputs: ForwardInputs): ForwardOutputs {
    return fusedForward(this, inputs) ?? super.forward(inputs);
  }

  /**
   * LayersModel.predict: for ids [b, t] on webgpu, every position's logits [b, t, V] through the
   * fused prefill engine where it applies (as forward); otherwise tfjs's graph.
   */
  override predict(
    x: tf.Tensor | tf.Tensor[],
    args?: Parameters<tf.LayersModel['predict']>[1],
  ): tf.Tensor | tf.Tensor[] {
    const one = Array.isArray(x) ? (x.length === 1 ? x[0] : null) : x;
    if (one != null && one.rank === 2 && (args?.batchSize == null || args.batchSize >= one.shape[0])) {
      const out = fusedForward(this, {inputIds: one});
      if (out != null) return out.logits;
    }
    return super.predict(x, args);
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
  decodeStep(
    state: GenerationState,
    nextIds: number[] | number[][] | tf.Tensor,
  ): {logits: tf.Tensor; state: GenerationState} {
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
