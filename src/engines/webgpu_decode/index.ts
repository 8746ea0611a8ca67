/**
 * When decodeStep uses the fused WebGPU decode engine (engine.ts), and one engine per (model,
 * batch size): the entry point of src/engines/webgpu_decode.
 *   fusedDecodeConfig.enabled = false;        // or env GRIFFIN_FUSED_DECODE=0: tfjs ops instead (on by default)
 *   const eng = fusedDecoderFor(model, b);    // null when it does not apply
 *
 * It applies on the webgpu backend to models without LoRA adapters (float32 or compact weights), for 1..32 rows.
 *
 * Shape letters: b batch rows.
 */
import * as tf from '@tensorflow/tfjs';
import type {Linear} from '../../../layers/basic';
import type {ResidualBlock} from '../../../layers/model_layers';
import {RecurrentBlock} from '../../../layers/recurrent';
import {FusedDecoder} from './engine';
import type {DecodeModelView} from './model_view';
import {webgpuBackend} from './tfjs_webgpu';

export type {Dispatch, DispatchTiming, FusedDecoderOptions, PrefillTarget} from './engine';
export {FusedDecoder} from './engine';
export type {DecodeModelView} from './model_view';
export type {AttentionBuffers, LayerBuffers, RecurrentBuffers} from './plan';
export {fusedTuning, tunedAsOneRow} from './tuning';

/**
 * enabled: null = env GRIFFIN_FUSED_DECODE (0/false/off: off; unset or anything else: on).
 *
 * On by default: the engine, tfjs ops and the cpu backend agree on a real GPU (bench/diagnose_decode.ts;
 * figures: see bench/results/NOTES.md) and on SwiftShader (CI).
 */
export const fusedDecodeConfig: {enabled: boolean | null; maxBatch: number} = {enabled: null, maxBatch: 32};

export function fusedDecodeEnabled(): boolean {
  if (fusedDecodeConfig.enabled != null) return fusedDecodeConfig.enabled;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_FUSED_DECODE : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}

/** Engines kept per model: the batch sizes used last (a shrinking batch makes a few). */
const MAX_ENGINES = 2;
const engines = new WeakMap<DecodeModelView, FusedDecoder[]>();
const warned = new WeakSet<DecodeModelView>();
/** Models whose engine the device rejected: not built again. */
const failedModels = new WeakSet<DecodeModelView>();

/** The Linear layers of a block (what LoRA adapts). */
function blockLinears(blk: ResidualBlock): Linear[] {
  const tb = blk.temporal_block,
    mlp = blk.mlp_block;
  const temporal =
    tb instanceof RecurrentBlock
      ? [tb.linear_x, tb.linear_y, tb.linear_out]
      : [tb.q_proj, tb.k_proj, tb.v_proj, tb.o_proj];
  return [...temporal, mlp.gate_proj, mlp.up_proj, mlp.down_proj];
}

function supported(model: DecodeModelView, b: number): boolean {
  if (b < 1 || b > fusedDecodeConfig.maxBatch) return false;
  const c = model.config;
  if (c.intermediate_size % 2 !== 0 || c.lru_width % c.num_attention_heads !== 0) return false;
  if (c.num_attention_heads % c.num_key_value_heads !== 0 || c.rotary_dim % 2 !== 0) return false;
  // LoRA adapters (layers/lora.ts) add to a Linear's output: the engine knows nothing of them.
  return !model.blocks.some((blk) => blockLinears(blk).some((l) => l.adapter != null));
}

/**
 * Whether an engine of b rows would be used for this model now (backend, switch, shape, no LoRA,
 * not rejected by the device), without making one: for callers that build their own (src/serve).
 */
export function fusedDecodeApplies(model: DecodeModelView, b: number): boolean {
  return fusedDecodeEnabled() && tf.getBackend() === 'webgpu' && supported(model, b) && !failedModels.has(model);
}

/** The engine for this model and batch size (made on first use), or null when decodeStep must use tfjs ops. */
export function fusedDecoderFor(model: DecodeModelView, b: number): FusedDecoder | null {
  if (!fusedDecodeEnabled() || tf.getBackend() !== 'webgpu' || !supported(model, b)) return null;
  let list = engines.get(model);
  if (list == null) engines.set(model, (list = []));
  const device = webgpuBackend().device;
  let eng = list.find((x) => x.B === b) ?? null;
  if (eng != null && (eng.failed != null || !eng.isCurrent() || eng.device !== device)) {
    // Weights changed (training, loading), the backend was recreated, or the device rejected it.
    if (eng.failed != null) failedModels.add(model);
    retire(list, eng);
    if (failedModels.has(model)) return null;
    eng = null;
  }
  if (eng == null) {
    if (failedModels.has(model)) return null;
    try {
      eng = new FusedDecoder(model, b);
    } catch (e) {
      // A shape the kernels do not cover (or a device without room for them): tfjs ops instead.
      if (!warned.has(model)) console.warn(`fused WebGPU decode unavailable, using tfjs ops: ${(e as Error).message}`);
      warned.add(model);
      return null;
    }
    list.push(eng);
    while (list.length > MAX_ENGINES) retire(list, list[0]);
  } else {
    list.splice(list.indexOf(eng), 1);
    list.push(eng); // most recently used last
  }
  return eng;
}

function retire(list: FusedDecoder[], eng: FusedDecoder): void {
  // A state still living in the engine gets its layers back (as tensors) first.
  if (eng.owner != null && !eng.isDisposed) eng.owner.detachFused();
  eng.owner = null;
  list.splice(list.indexOf(eng), 1);
  eng.dispose();
}

/** Frees the engines of a model (their GPU buffers); states living in them are exported first. */
export function disposeFusedDecoders(model: DecodeModelView): void {
  const list = engines.get(model);
  if (list == null) return;
  for (const eng of [...list]) retire(list, eng);
  engines.delete(model);
}
