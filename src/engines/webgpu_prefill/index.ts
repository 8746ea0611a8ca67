/**
 * When prefill uses the fused WebGPU prefill engine (engine.ts), and one engine per decode engine
 * (model, batch size) and chunk capacity: the entry point of src/engines/webgpu_prefill.
 *   fusedPrefillConfig.enabled = false;            // or env GRIFFIN_FUSED_PREFILL=0: tfjs ops instead (on by default)
 *   const pre = fusedPrefillFor(model, 1, 512);   // an engine for chunks of 512 steps, or null when it does not apply
 *
 * It applies where the fused decode engine does (webgpu, no LoRA adapters, 1..32 rows; see
 * ../webgpu_decode/index.ts) and the chunk's buffers fit the device's binding limit; the caller
 * (src/generation/state.ts) also keeps prompts with padding on the tfjs path.
 *
 * Shape letters: b batch rows, t steps per row in a chunk.
 */
import {type DecodeModelView, fusedDecoderFor} from '../webgpu_decode';
import {fusedPrefillConfig, fusedPrefillEnabled} from './config';
import {FusedPrefill} from './engine';
import {rowFloats} from './plan';

export {fusedForwardConfig, fusedForwardEnabled, fusedPrefillConfig, fusedPrefillEnabled} from './config';
export type {DispatchTiming} from './engine';
export {FusedPrefill} from './engine';

const engines = new WeakMap<object, FusedPrefill>();
const warned = new WeakSet<DecodeModelView>();
/** Models whose engine the device rejected: not built again. */
const failedModels = new WeakSet<DecodeModelView>();

/** Most steps per row of a chunk for b rows on this device (0: none fit). */
export function fusedPrefillMaxChunk(model: DecodeModelView, b: number, limits: GPUSupportedLimits): number {
  const most = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const byLimit = Math.floor(most / (4 * b * rowFloats(model)));
  return Math.max(0, Math.min(fusedPrefillConfig.maxChunk, Math.floor(fusedPrefillConfig.maxRows / b), byLimit));
}

/**
 * The engine for this model, b rows and chunks of up to `want` steps (or fewer, as many as the
 * device allows: its `capacity`), made on first use and remade with room for longer chunks when
 * asked; null when prefill must use tfjs ops.
 */
export function fusedPrefillFor(model: DecodeModelView, b: number, want: number): FusedPrefill | null {
  if (!fusedPrefillEnabled() || failedModels.has(model)) return null;
  const dec = fusedDecoderFor(model, b);
  if (dec == null) return null;
  const t = Math.min(want, fusedPrefillMaxChunk(model, b, dec.device.limits));
  if (t < 1) return null;
  let eng = engines.get(dec) ?? null;
  if (eng?.failed != null) {
    failedModels.add(model);
    eng.dispose();
    engines.delete(dec);
    return null;
  }
  if (eng != null && !eng.isDisposed && eng.capacity >= t) return eng;
  eng?.dispose();
  // Room for the next power of two (at least 64 steps), so that prompts of nearby lengths share it.
  let cap = 64;
  while (cap < t) cap *= 2;
  try {
    eng = new FusedPrefill(dec, Math.min(cap, fusedPrefillMaxChunk(model, b, dec.device.limits)));
  } catch (e) {
    if (!warned.has(model)) console.warn(`fused WebGPU prefill unavailable, using tfjs ops: ${(e as Error).message}`);
    warned.add(model);
    engines.delete(dec);
    return null;
  }
  engines.set(dec, eng);
  return eng;
}
