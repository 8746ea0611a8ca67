/**
 * Random-weight models for the fused engine tests (fused decode, prefill and forward, queued generate):
 * every parameter from a seeded host PRNG, so a cpu and a webgpu model of one seed hold the same
 * values, and the small config they share (an untied head, q/k/v biases, multi-query, window 8).
 *   const model = randomModel(SMALL_CFG, 7);                                   // float32
 *   const int4 = randomModel(SMALL_CFG, 7, {dtype: 'int4', groupSize: 16});   // the same values, packed
 */
import type {CompactSpec} from '../../ops/compact/format';
import type {RecurrentGemmaConfigArgs} from '../../src/config';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {uniform} from './kernel_helpers';

/** 3 layers (recurrent, attention, recurrent), widths 32 / 48 / 40, vocabulary 203, untied head, biases, window 8. */
export const SMALL_CFG: RecurrentGemmaConfigArgs = {
  vocab_size: 203,
  hidden_size: 32,
  lru_width: 48,
  intermediate_size: 80,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  num_hidden_layers: 3,
  attention_window_size: 8,
  block_types: ['recurrent', 'attention'],
  attention_bias: true,
  tie_word_embeddings: false,
  logits_soft_cap: 10,
};

/**
 * Writes every parameter from the PRNG (seed * 1000 + its index): recurrent_param so that
 * a = exp(-8 softplus(p)) lies in [0.8, 0.999] with the gate open, vectors (norms, biases) in
 * [-0.5, 0.5], conv1d kernels in [-0.6, 0.6], the embedding and head in [-1, 1], other matrices
 * in +-sqrt(3 / fan-in). A compact matrix packs the values written.
 */
export function randomizeWeights(model: RecurrentGemmaForCausalLM, seed: number): void {
  let k = 0;
  for (const [name, v] of model.namedParameters()) {
    const shape = v.shape as number[];
    const n = shape.reduce((a, b) => a * b, 1);
    const s = seed * 1000 + k++;
    let data: Float32Array;
    if (name.endsWith('recurrent_param')) {
      data = uniform(s, n, 0.8, 0.999).map((a) => Math.log(Math.exp(-Math.log(a) / 8) - 1));
    } else if (shape.length === 1) {
      data = uniform(s, n, -0.5, 0.5);
    } else {
      const lim = name.includes('conv_1d')
        ? 0.6
        : /embed|lm_head/.test(name)
          ? 1
          : Math.sqrt(3 / shape[shape.length - 1]);
      data = uniform(s, n, -lim, lim);
    }
    const t = tf.tensor(data, shape);
    v.write(t);
    t.dispose();
  }
}

/** A model of `cfg` on the current backend with randomizeWeights(seed); compact: its matrices held so. */
export function randomModel(
  cfg: RecurrentGemmaConfigArgs,
  seed: number,
  compact?: CompactSpec,
): RecurrentGemmaForCausalLM {
  const model = new RecurrentGemmaForCausalLM(cfg, compact ? {compact} : {});
  randomizeWeights(model, seed);
  return model;
}

/** Three prompts of 5 for the queued-generate suites, row 1 left-padded by 2 (MASK_3x5 its attention mask). */
export const PROMPTS_3x5 = [
  [2, 5, 9, 11, 40],
  [0, 0, 2, 7, 8],
  [2, 100, 101, 102, 103],
];
export const MASK_3x5 = [
  [1, 1, 1, 1, 1],
  [0, 0, 1, 1, 1],
  [1, 1, 1, 1, 1],
];
