/**
 * The model is a plain tfjs LayersModel for training too: compile with causalLMLoss, fit on
 * ids and [b, t] labels (the model checks those labels as such, not against the logits' shape).
 */

import {causalLMLoss} from '../../ops/loss';
import {tf} from '../../src/tf';
import {loadTiny} from './helpers';

jest.setTimeout(300_000);

// No registerTrainingKernels here: fit must set up what it needs by itself.
beforeAll(() => tf.setBackend('cpu'));

test('model.compile({optimizer, loss: causalLMLoss}) + model.fit(ids, labels) lowers the loss', async () => {
  const model = await loadTiny();
  const ids = tf.tensor2d(
    [
      [2, 10, 20, 30, 40, 50, 60, 70, 80, 90],
      [2, 11, 21, 31, 41, 51, 61, 71, 81, 91],
    ],
    undefined,
    'int32',
  );
  const labels = tf.tensor2d(
    [
      [-100, -100, 20, 30, 40, 50, 60, 70, 80, 90],
      [2, 11, 21, 31, 41, 51, 61, 71, 81, 91],
    ],
    undefined,
    'int32',
  );
  model.compile({optimizer: tf.train.adam(1e-2), loss: causalLMLoss});
  const before = model.evaluate(ids, labels) as tf.Scalar;
  const direct = model.forward({inputIds: ids, labels});
  expect(before.dataSync()[0]).toBeCloseTo(direct.loss!.dataSync()[0], 5);
  const history = await model.fit(ids, labels, {epochs: 4, batchSize: 2, verbose: 0});
  const losses = history.history.loss as number[];
  const after = (model.evaluate(ids, labels) as tf.Scalar).dataSync()[0];
  console.log(
    `fit: loss per epoch ${losses.map((l) => l.toFixed(3)).join(', ')}; evaluate ${before.dataSync()[0].toFixed(3)} -> ${after.toFixed(3)}`,
  );
  expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 2);
  expect(after).toBeLessThan(before.dataSync()[0] / 2);
  // Other losses keep tfjs's usual target check.
  model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
  await expect(model.fit(ids, labels, {epochs: 1})).rejects.toThrow(/expected .* to have 3 dimension/);
  tf.dispose([ids, labels, before, direct.logits, direct.loss!]);
  model.dispose();
});
