/**
 * tiny-a's golden float64 loss and gradients on the wasm backend: every product goes through
 * ops/wasm_matmul.ts (transposed weights, per-head gates, attention, and the transposed products
 * of the backward pass) and the loss's float32 one-hot mask through ops/wasm_onehot.ts.
 */

import {useBackend} from '../../src/backend';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';
import {expectGoldenLossAndGrads} from './golden_grads';

const DIR = TINY_A_DIR;
const {golden, tensor: G} = loadTinyAGolden();

let model: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await useBackend('wasm');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
});
afterAll(() => model.dispose());

test('wasm: float32 one-hot holds ones, not int32 bits', () => {
  const o = tf.oneHot(tf.tensor1d([1, 3, -1], 'int32'), 4, 1, 0, 'float32');
  expect(o.dtype).toBe('float32');
  expect(Array.from(o.dataSync())).toEqual([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  expect(Array.from(tf.oneHot(tf.tensor1d([2], 'int32'), 3, 5, -1).dataSync())).toEqual([-1, -1, 5]);
});

test('wasm: logits, loss within 1e-5 and every gradient within 1e-4 of the float64 golden', () => {
  expect(tf.getBackend()).toBe('wasm');
  const {logits} = model.forward({inputIds: golden.input_ids});
  expect(relError(logits.dataSync(), G('logits'))).toBeLessThan(1e-5);
  logits.dispose();
  expectGoldenLossAndGrads(model, 'wasm');
});
