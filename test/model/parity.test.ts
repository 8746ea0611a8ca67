/**
 * Parity with the float64 reference dumps of test/fixtures/tiny-a (HF transformers): logits,
 * every hidden state, loss and every parameter's gradient. Prints the worst relative error per tensor.
 */

import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';
import {expectGoldenLossAndGrads} from './golden_grads';

const DIR = TINY_A_DIR;
const {golden, tensor: G} = loadTinyAGolden();

let model: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
});

test('logits and every hidden state within 1e-5 relative error', () => {
  const {logits, hiddenStates} = model.forward({inputIds: golden.input_ids, outputHiddenStates: true});
  const report: string[] = [];
  const errL = relError(logits.dataSync(), G('logits'));
  report.push(`logits ${errL.toExponential(2)}`);
  expect(errL).toBeLessThan(1e-5);
  expect(hiddenStates!.length).toBe(model.config.num_hidden_layers + 1);
  hiddenStates!.forEach((h, i) => {
    const err = relError(h.dataSync(), G(`hidden_states.${i}`));
    report.push(`hidden_states.${i} ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-5);
  });
  console.log(`worst relative errors: ${report.join(', ')}`);
});

test('loss within 1e-5 and every gradient within 1e-4 relative error', () => {
  expectGoldenLossAndGrads(model, 'cpu');
});
