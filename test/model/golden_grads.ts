/**
 * tiny-a's loss and gradients on its golden batch against HF's float64 dumps, on the current
 * backend: the loss within 1e-5, every parameter's gradient (and no other) within 1e-4 relative
 * error. Shared by the cpu parity test and the wasm golden test.
 *   expectGoldenLossAndGrads(model, 'wasm');   // model: tiny-a loaded on the backend under test
 */
import type {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadTinyAGolden, relError} from '../helpers';

export function expectGoldenLossAndGrads(model: RecurrentGemmaForCausalLM, label: string): void {
  const {golden, tensor: G} = loadTinyAGolden();
  const params = model.namedParameters();
  const vars = [...params.values()].map((v) => v.read() as tf.Variable);
  const {value, grads} = tf.variableGrads(
    () => model.forward({inputIds: golden.input_ids, labels: golden.labels}).loss!,
    vars,
  );
  const loss = value.dataSync()[0];
  console.log(`${label}: loss ${loss} vs golden ${golden.loss}`);
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
  console.log(`${label}: worst gradient relative error ${worst[1].toExponential(2)} (${worst[0]})`);
  tf.dispose([value, ...Object.values(grads)]);
}
