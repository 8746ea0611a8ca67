/**
 * Parity with the float64 reference dumps of test/fixtures/tiny-a (HF transformers): logits,
 * every hidden state, loss and every parameter's gradient. Prints the worst relative error per tensor.
 */

import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';

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
  const params = model.namedParameters();
  const vars = [...params.values()].map((v) => v.read() as tf.Variable);
  const {value, grads} = tf.variableGrads(
    () => model.forward({inputIds: golden.input_ids, labels: golden.labels}).loss!,
    vars,
  );
  const loss = value.dataSync()[0];
  console.log(`loss ${loss} vs golden ${golden.loss}`);
  expect(Math.abs(loss - golden.loss)).toBeLessThan(1e-5);
  const names = [...params.keys()];
  expect(new Set(golden.grad_names)).toEqual(new Set(names.map((n) => `grad.${n}`)));
  let worst = ['', 0] as [string, number];
  for (const [name, v] of params) {
    const g = grads[(v.read() as tf.Variable).name];
    expect(g).toBeDefined();
    const err = relError(g.dataSync(), G(`grad.${name}`));
    if (err > worst[1]) worst = [name, err];
    expect({name, ok: err < 1e-4}).toEqual({name, ok: true});
  }
  console.log(`worst gradient relative error ${worst[1].toExponential(2)} (${worst[0]})`);
});
