/**
 * Limits checked before anything is allocated: the backends' (wasm's heap, a WebGPU adapter's
 * largest buffer), a config's sizes, and the bounds of every command-line option that sizes work.
 *   const fits = model.weightBytes() <= WASM_MAX_WEIGHT_BYTES;
 *   if (config.num_hidden_layers > CONFIG_LIMITS.num_hidden_layers) throw new Error('too deep');
 *   checkGpuBuffers([['the logits', 3e9]], {maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 31}, 'lower --seq-len');   // throws
 */

/**
 * tfjs-backend-wasm is 32-bit WebAssembly: all its tensors share one heap of at most 4 GiB
 * (allocation fails just past 4096 MB), and XNNPACK keeps a packed copy of each float32 weight
 * it multiplies (ops/wasm_matmul.ts adds a transposed one): weights may take this much.
 */
export const WASM_MAX_WEIGHT_BYTES = 3.5 * 2 ** 30;
/** All of wasm's heap, for estimates of everything a job holds at once (weights, activations, optimizer). */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

/**
 * Upper bounds of a config's sizes, far above every released RecurrentGemma (2B: 26 layers, width
 * 2560, vocabulary 256000; 9B: 38 layers, width 4096): a config past them is a broken file, and is
 * refused before a model of that size is built.
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  vocab_size: 2 ** 21,
  hidden_size: 2 ** 15,
  intermediate_size: 2 ** 18,
  lru_width: 2 ** 15,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  attention_window_size: 2 ** 20,
  conv1d_width: 64,
} as const;

/** Values in one tensor at most: tfjs indexes tensors with int32. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

/** Bounds of the command-line options that size a job. */
export const OPTION_LIMITS = {
  /** Tokens per row (finetune --seq-len), and new tokens of one generation. */
  seqLen: 2 ** 20,
  maxNewTokens: 2 ** 20,
  batchSize: 4096,
  gradAccum: 65536,
  steps: 100_000_000,
  epochs: 100_000,
  /** Checkpoint / eval intervals and warmup: at most the largest step count. */
  interval: 100_000_000,
  topK: 2 ** 21,
  /** LoRA rank: also at most the smaller dimension of each targeted layer (layers/lora.ts). */
  loraRank: 2 ** 15,
  seed: 2 ** 32 - 1,
} as const;

/** A WebGPU adapter's limits on one buffer (GPUSupportedLimits' two fields). */
export interface GpuBufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/**
 * Refuses, naming the numbers, when one of the named buffers would exceed what the WebGPU
 * adapter allows for one buffer (the smaller of its two limits: every tensor is bound as storage).
 * buffers: [what it is, bytes]; advice: what the user can change, appended to the message.
 */
export function checkGpuBuffers(buffers: Array<[string, number]>, limits: GpuBufferLimits, advice: string): void {
  const most = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const [name, bytes] = buffers.reduce((a, c) => (c[1] > a[1] ? c : a));
  if (bytes > most) {
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    throw new Error(
      `${name} needs one GPU buffer of ${mib(bytes)}, more than the WebGPU adapter allows ` +
        `(maxBufferSize ${mib(limits.maxBufferSize)}, maxStorageBufferBindingSize ${mib(limits.maxStorageBufferBindingSize)}): ${advice}`,
    );
  }
}
