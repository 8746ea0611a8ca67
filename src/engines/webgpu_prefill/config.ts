/**
 * The fused prefill engine's switches: whether prefill uses it, and the bounds of its chunks;
 * whether forward / predict use it on webgpu, and the bound of its all-rows head's scratch.
 *   import {fusedForwardConfig, fusedPrefillConfig} from './config';
 *   fusedPrefillConfig.enabled = false;   // or env GRIFFIN_FUSED_PREFILL=0: tfjs ops instead (on by default)
 *   fusedForwardConfig.enabled = false;   // or env GRIFFIN_FUSED_FORWARD=0: forward on tfjs ops (on by default)
 */
import {envIntInRange} from '../../util/env';

/**
 * enabled: null = env GRIFFIN_FUSED_PREFILL (0/false/off: off; unset or anything else: on).
 * maxChunk: most steps per row in one chunk; maxRows: most token rows (b x steps) in one chunk
 * (the engine's activation buffers grow with it); scanSteps: steps per chunk of the RG-LRU scan
 * (read when an engine is built).
 */
export const fusedPrefillConfig: {enabled: boolean | null; maxChunk: number; maxRows: number; scanSteps: number} = {
  enabled: null,
  maxChunk: 4096,
  maxRows: 16384,
  scanSteps: 32,
};

/**
 * Dispatches of a chunk encoded and submitted on their own before the rest is encoded, so that the
 * GPU starts while the host encodes the others: env GRIFFIN_PREFILL_EARLY_SUBMIT (0: one submit per
 * chunk), default 32; an integer in [0, 100000], else refused in one line.
 */
export function prefillEarlySubmit(): number {
  return envIntInRange('GRIFFIN_PREFILL_EARLY_SUBMIT', 32, 0, 100000);
}

export function fusedPrefillEnabled(): boolean {
  if (fusedPrefillConfig.enabled != null) return fusedPrefillConfig.enabled;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_FUSED_PREFILL : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}

/**
 * enabled: null = env GRIFFIN_FUSED_FORWARD (0/false/off: off; unset or anything else: on); forward
 * also needs the prefill engine on (fusedPrefillEnabled). headBytes: the most bytes of logits one
 * slice of the all-rows head computes before they are copied out (its scratch; at least 64 rows'
 * worth whatever it says); bounds [1 MiB, 2 GiB].
 */
export const fusedForwardConfig: {enabled: boolean | null; headBytes: number} = {
  enabled: null,
  headBytes: 256 * 2 ** 20,
};

export function fusedForwardEnabled(): boolean {
  if (!fusedPrefillEnabled()) return false;
  if (fusedForwardConfig.enabled != null) return fusedForwardConfig.enabled;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_FUSED_FORWARD : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}
