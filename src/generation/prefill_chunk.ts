/**
 * How many prompt steps prefill runs in one parallel pass when the caller does not say.
 *   const chunk = defaultPrefillChunk(config, b);                    // for tf.getBackend()
 *   defaultPrefillChunk(config, 1, 'wasm') === DEFAULT_PREFILL_CHUNK;   // 512 on host backends
 *   const biggest = prefillTensors(config, 1, 4096);   // [what, bytes] of one pass's largest tensors
 *
 * On the cpu and wasm backends 512 (DEFAULT_PREFILL_CHUNK): the attention scores of a chunk cost
 * t * (t + W) per head, and longer chunks buy little on a host backend. On webgpu every chunk
 * costs ~2000 GPU programs whatever its length, so one long pass beats several short ones
 * (figures: see bench/results/NOTES.md): there the chunk is the longest (up to 4096) whose
 * largest transient tensors (attention scores, MLP activations) stay under 512 MiB each, well
 * inside the 2 GiB storage binding limit of NVIDIA GPUs under Dawn.
 */

import type {RecurrentGemmaConfig} from '../config';
import {tf} from '../tf';

export const DEFAULT_PREFILL_CHUNK = 512;
const GPU_TRANSIENT_BYTES = 512 * 2 ** 20;

export function defaultPrefillChunk(
  config: RecurrentGemmaConfig,
  batch: number,
  backend: string = tf.getBackend(),
): number {
  if (backend !== 'webgpu') return DEFAULT_PREFILL_CHUNK;
  const H = config.num_attention_heads,
    W = config.attention_window_size;
  const I = config.intermediate_size;
  for (const c of [4096, 2048, 1024]) {
    const scores = batch * H * c * (c + W) * 4;
    const mlp = batch * c * I * 4;
    if (scores <= GPU_TRANSIENT_BYTES && mlp <= GPU_TRANSIENT_BYTES) return c;
  }
  return DEFAULT_PREFILL_CHUNK;
}

/**
 * The largest single tensors of one prefill pass of c steps over b rows (float32): the attention
 * scores of the chunk against its window, the MLP's activations and the logits of the last step
 * (the weights are already on the device). [what, bytes], for checkGpuBuffers (src/util/limits.ts).
 */
export function prefillTensors(config: RecurrentGemmaConfig, b: number, c: number): Array<[string, number]> {
  const H = config.num_attention_heads,
    W = config.attention_window_size;
  return [
    [`the attention scores of a prefill chunk of ${c} steps x ${b} rows`, 4 * b * H * c * (c + W)],
    [`the MLP activations of a prefill chunk of ${c} steps x ${b} rows`, 4 * b * c * config.intermediate_size],
    [`the logits of ${b} rows`, 4 * b * config.vocab_size],
  ];
}
