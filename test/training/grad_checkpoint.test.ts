/**
 * Gradient checkpointing: the same loss and gradients as the plain path (on a packed, padded
 * batch, so every piece of the saved sequence info is used), less peak memory, nothing leaked.
 */

import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {seededUniform} from '../helpers';
import {loadTiny, maxDiff, useCpu} from './helpers';

jest.setTimeout(300_000);

let model: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await useCpu();
  model = await loadTiny();
});
afterAll(() => model.dispose());

function lossAndGrads(inputs: Parameters<RecurrentGemmaForCausalLM['forward']>[0]) {
  const vars = [...model.namedParameters().values()].map((v) => v.read() as tf.Variable);
  const {value, grads} = tf.variableGrads(() => model.forward(inputs).loss!, vars);
  const out = {loss: value.dataSync()[0], grads: vars.map((v) => (grads[v.name].dataSync() as Float32Array).slice())};
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

test('same loss and gradients as the plain path, bitwise', () => {
  const rnd = seededUniform(3);
  const t = 40;
  const inputIds = [0, 1].map(() => Array.from({length: t}, () => 1 + Math.floor(rnd() * 511)));
  // Row 0: three packed documents; row 1: one document and right padding.
  const positionIds = [
    [...Array(15).keys(), ...Array(10).keys(), ...Array(15).keys()],
    [...Array(30).keys(), ...Array(10).fill(0)],
  ];
  const attentionMask = [Array(t).fill(1), [...Array(30).fill(1), ...Array(10).fill(0)]];
  const labels = inputIds.map((r, i) => r.map((x, j) => (attentionMask[i][j] ? x : -100)));
  const inputs = {inputIds, labels, positionIds, attentionMask};
  const n0 = tf.memory().numTensors;
  const plain = lossAndGrads(inputs);
  const ckpt = lossAndGrads({...inputs, gradientCheckpointing: true});
  expect(tf.memory().numTensors).toBe(n0);
  const worst = Math.max(...plain.grads.map((g, i) => maxDiff(g, ckpt.grads[i])));
  console.log(`gradient checkpointing: loss ${ckpt.loss} vs ${plain.loss}, max gradient difference ${worst}`);
  expect(ckpt.loss).toBe(plain.loss);
  expect(worst).toBe(0);
});

test('peak memory of a backward pass is lower', async () => {
  const ids = tf.randomUniform([2, 192], 0, 512, 'int32', 4);
  const vars = [...model.namedParameters().values()].map((v) => v.read() as tf.Variable);
  const peak = async (gradientCheckpointing: boolean) =>
    (
      await tf.profile(() => {
        const {value, grads} = tf.variableGrads(
          () => model.forward({inputIds: ids, labels: ids, gradientCheckpointing}).loss!,
          vars,
        );
        tf.dispose(Object.values(grads));
        return value;
      })
    ).peakBytes;
  const plain = await peak(false),
    ckpt = await peak(true);
  console.log(
    `peak bytes of loss + gradients, 2 x 192 tokens: plain ${(plain / 1e6).toFixed(1)} MB, checkpointed ${(ckpt / 1e6).toFixed(1)} MB`,
  );
  expect(ckpt).toBeLessThan(plain * 0.7);
  ids.dispose();
});
