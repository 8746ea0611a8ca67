/**
 * The WebGPU adapter's buffer limits, checked up front (fake limits, so that no GPU is needed):
 * a fine-tuning step's largest tensor and a prefill chunk's. Byte counts worked by hand for
 * tiny-a (vocabulary 512, MLP 192, 4 heads, window 64; attention blocks of 128 queries).
 */
import * as path from 'path';
import {gpuBufferLimits} from '../../ops/gpu_limits';
import {RecurrentGemmaConfig} from '../../src/config';
import {prefill} from '../../src/generation/state';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {checkTrainingFits} from '../../src/training/memory';

const tinyA = new RecurrentGemmaConfig({
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 192,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  lru_width: 64,
  attention_window_size: 64,
});
const MiB = 2 ** 20;

describe('training: the largest tensor of a step against one GPU buffer', () => {
  test('logits of 4 x 4096 x 512 float32 = 32 MiB are refused under a 16 MiB binding limit, with the numbers', () => {
    const gpu = {maxBufferSize: 64 * MiB, maxStorageBufferBindingSize: 16 * MiB};
    expect(() => checkTrainingFits(tinyA, {batchSize: 4, seqLen: 4096}, 'webgpu', gpu)).toThrow(
      'the logits of --batch-size 4 x --seq-len 4096 needs one GPU buffer of 32.0 MiB, more than the WebGPU adapter allows (maxBufferSize 64.0 MiB, maxStorageBufferBindingSize 16.0 MiB): lower --batch-size or --seq-len',
    );
    // maxBufferSize is the smaller one here.
    expect(() =>
      checkTrainingFits(tinyA, {batchSize: 4, seqLen: 4096}, 'webgpu', {
        maxBufferSize: 31 * MiB,
        maxStorageBufferBindingSize: 128 * MiB,
      }),
    ).toThrow('maxBufferSize 31.0 MiB');
  });

  test('fits: 4 x 1024 (logits 8 MiB, MLP 3 MiB, a score block 4*4*4*128*192 B = 1.5 MiB); other backends ignore GPU limits', () => {
    const gpu = {maxBufferSize: 64 * MiB, maxStorageBufferBindingSize: 8 * MiB};
    expect(() => checkTrainingFits(tinyA, {batchSize: 4, seqLen: 1024}, 'webgpu', gpu)).not.toThrow();
    expect(() => checkTrainingFits(tinyA, {batchSize: 4, seqLen: 1025}, 'webgpu', gpu)).toThrow(
      'the logits of --batch-size 4 x --seq-len 1025',
    );
    expect(() => checkTrainingFits(tinyA, {batchSize: 4, seqLen: 4096}, 'cpu', gpu)).not.toThrow();
  });
});

describe('prefill: a chunk against one GPU buffer', () => {
  let model: RecurrentGemmaForCausalLM;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(__dirname, '../fixtures/tiny-a'));
  });
  afterAll(() => model.dispose());
  const prompt = [[2, ...Array.from({length: 599}, (_, i) => 3 + (i % 400))]];

  test('scores of a 512-step chunk, 4*4*512*(512+64) B = 4.5 MiB, are refused under 4 MiB; 256 steps (1.25 MiB) run', () => {
    const gpu = {maxBufferSize: 4 * MiB, maxStorageBufferBindingSize: 4 * MiB};
    expect(() => prefill(model, prompt, {chunkSize: 512, gpuLimits: gpu})).toThrow(
      'the attention scores of a prefill chunk of 512 steps x 1 rows needs one GPU buffer of 4.5 MiB, more than the WebGPU adapter allows (maxBufferSize 4.0 MiB, maxStorageBufferBindingSize 4.0 MiB): lower chunkSize or the batch',
    );
    expect(tf.memory().numTensors).toBeGreaterThan(0);
    const before = tf.memory().numTensors;
    const st = prefill(model, prompt, {chunkSize: 256, gpuLimits: gpu});
    expect(st.batchSize).toBe(1);
    st.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('on cpu there is no device: no limits', () => {
    expect(gpuBufferLimits()).toBeNull();
  });
});
