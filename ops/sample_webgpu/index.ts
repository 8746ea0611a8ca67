/**
 * Sampling on the GPU: one token per row of logits, drawn where the logits are, so that 4 bytes
 * per row come back instead of the vocabulary. The kernels (shaders.ts), the runner (sampler.ts)
 * and Philox4x32-10 (philox.ts).
 *   const s = new GpuSampler(backend.device, V, b, b);   // then, for a GPUBuffer of [b, V] float32 logits:
 *   const pick = (buf: GPUBuffer) => s.sample(buf, [{seenRow: 0, seed: 1, step: 0, temperature: 0.8, topP: 0.95}]);
 *
 * The rules are the host sampler's (src/generation/sampling.ts), in its order:
 *   1. repetition penalty, once per distinct seen id: l > 0 ? l / r : l * r;
 *   2. temperature: z = l / T (T = 0: greedy, the first index of the maximum; nothing below applies);
 *   3. top-k: keep z >= the k-th largest z counting repeats (every token tied with it is kept);
 *   4. top-p on the softmax of what top-k kept: the smallest set of most probable tokens whose
 *      mass reaches p; among tokens tied at the cutoff only as many as the sum needs, lowest ids first;
 *   5. min-p: keep tokens whose probability is >= minP times the largest (exp(z - max z) >= minP);
 *   6. draw: u uniform in [0, 1), the first id (in id order) whose running sum of kept masses passes u.
 * Where the arithmetic differs: the GPU works in float32 (exp, division within WGSL's accuracy) and
 * sums masses in 64-bit fixed point (a mass under 2^-(32+SHIFT) of the max, ~1e-14 at V = 256000,
 * counts as 0); the host in float64. So a cutoff can differ only where a running sum lies within
 * float32 rounding of p. NaN logits are never drawn. u comes from Philox4x32-10 keyed by (seed, 0)
 * at counter (step, 0, 0, 0), 32 bits: a seed gives the same ids on every run of the same device,
 * and rows with different seeds draw independently; the host sampler's mulberry32 stream is another,
 * so the GPU and the host do not draw the same token for a seed.
 */
export {PHILOX_WGSL, philox4x32} from './philox';
export {GpuSampler, type RowSampling} from './sampler';
export {ST, sampleShape} from './shaders';
