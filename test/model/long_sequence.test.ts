/**
 * A sequence many attention windows long, run whole (attention in blocks of queries: ops/attention.ts
 * attendLocal) and in short chunks carrying the state (each chunk small enough for the plain path):
 * the same state, so the same next-token logits.
 */
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, seededUniform} from '../helpers';

jest.setTimeout(300_000);

test('tiny-a (window 64) over 700 tokens: one chunk and chunks of 100 give the same next-token logits', async () => {
  await tf.setBackend('cpu');
  const model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(__dirname, '../fixtures/tiny-a'));
  const rnd = seededUniform(11);
  const ids = [[2, ...Array.from({length: 699}, () => 3 + Math.floor(rnd() * 500))]];
  const next = (chunkSize: number) => {
    const state = model.prefill(ids, {chunkSize});
    const {logits} = model.decodeStep(state, [7]);
    const v = logits.dataSync().slice();
    logits.dispose();
    state.dispose();
    return v;
  };
  const whole = next(700),
    chunked = next(100);
  // Float noise of the two orders of summation is ~5e-7; a key missing from each block gives ~8e-6.
  expect(maxAbsDiff(whole, chunked)).toBeLessThan(2e-6);
  model.dispose();
});
