/**
 * The default prefill chunk: 512 on host backends; on webgpu the longest chunk whose attention
 * scores and MLP activations each stay under 512 MiB (numbers worked by hand for the 2B shape:
 * H = 10, W = 2048, intermediate 15360 in HF's config, of which the MLP holds half per branch).
 */
import {RecurrentGemmaConfig} from '../../src/config';
import {DEFAULT_PREFILL_CHUNK, defaultPrefillChunk} from '../../src/generation/prefill_chunk';
import {SMALL_CONFIG} from '../../src/pretrain/small';
import {TWO_B_CONFIG} from '../helpers';

const twoB = new RecurrentGemmaConfig(TWO_B_CONFIG);

test('host backends keep 512', () => {
  expect(DEFAULT_PREFILL_CHUNK).toBe(512);
  for (const be of ['cpu', 'wasm', 'tensorflow']) expect(defaultPrefillChunk(twoB, 1, be)).toBe(512);
});

test('webgpu: 2048 for one 2B row (scores 10*2048*4096*4 = 320 MiB), 512 for 8 rows (1024 would be 960 MiB)', () => {
  expect(defaultPrefillChunk(twoB, 1, 'webgpu')).toBe(2048);
  expect(defaultPrefillChunk(twoB, 2, 'webgpu')).toBe(1024);
  expect(defaultPrefillChunk(twoB, 8, 'webgpu')).toBe(512);
  // A small model (the shipped one: H 4, W 128, intermediate 768) takes the largest chunk.
  const small = new RecurrentGemmaConfig(SMALL_CONFIG);
  expect(defaultPrefillChunk(small, 1, 'webgpu')).toBe(4096);
});
