/**
 * Limits of the backends that the loaders check before allocating anything.
 *   const fits = model.weightBytes() <= WASM_MAX_WEIGHT_BYTES;
 */

/**
 * tfjs-backend-wasm is 32-bit WebAssembly: all its tensors share one heap of at most 4 GiB
 * (allocation fails just past 4096 MB), and XNNPACK keeps a packed copy of each float32 weight
 * it multiplies (ops/wasm_matmul.ts adds a transposed one): weights may take this much.
 */
export const WASM_MAX_WEIGHT_BYTES = 3.5 * 2 ** 30;
